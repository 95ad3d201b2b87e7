// Run once by the mongo image's entrypoint, when the data volume is first
// initialised: the user the callqueue services connect as, allowed to read and
// write the callqueue database only. Its password comes from the environment.

const user = process.env.MONGO_APP_USERNAME;
const password = process.env.MONGO_APP_PASSWORD;
const database = process.env.MONGO_APP_DB || "callqueue";
if (!user || !password) {
  throw new Error("MONGO_APP_USERNAME and MONGO_APP_PASSWORD must be set");
}

db.getSiblingDB("admin").createUser({
  user: user,
  pwd: password,
  roles: [{ role: "readWrite", db: database }],
});
print(`created user ${user} with readWrite on ${database}`);
