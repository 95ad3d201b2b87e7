// Healthcheck of the mongo service (run by `mongosh --file` inside the container).
// The first time mongod answers, it initiates the single-node replica set; from
// then on it reports healthy only while this member is the writable primary, so
// the app services start once retryable writes and majority writes work.
// Credentials are read from the container's environment, never from arguments.

const admin = db.getSiblingDB("admin");
admin.auth(process.env.MONGO_INITDB_ROOT_USERNAME, process.env.MONGO_INITDB_ROOT_PASSWORD);

const replicaSet = process.env.MONGO_REPLICA_SET || "rs0";
const advertisedHost = process.env.MONGO_ADVERTISED_HOST || "mongo:27017";

function initiateOnce() {
  try {
    admin.runCommand({ replSetGetStatus: 1 });
  } catch (error) {
    if (error.codeName !== "NotYetInitialized") {
      throw error;
    }
    admin.runCommand({ replSetInitiate: { _id: replicaSet, members: [{ _id: 0, host: advertisedHost }] } });
    print(`initiated replica set ${replicaSet} with member ${advertisedHost}`);
  }
}

initiateOnce();
const hello = admin.runCommand({ hello: 1 });
if (hello.setName !== replicaSet || !hello.isWritablePrimary) {
  print(`not yet the writable primary of ${replicaSet}`);
  quit(1);
}
print(`primary of ${replicaSet}`);
