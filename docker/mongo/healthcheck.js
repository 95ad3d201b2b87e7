// Healthcheck of the mongo services (run by `mongosh --file` inside the container).
//
// MONGO_REPLICA_SET_MEMBERS lists the members as host:port, comma-separated
// (default: this member alone, MONGO_ADVERTISED_HOST). The first member listed
// initiates the replica set with all of them the first time mongod answers;
// docker-compose.yml runs a single member, docker-compose.replicaset.yml three.
// Whichever member is the writable primary adds a listed member that the set
// does not have yet (one per run, as MongoDB requires), so a running single-node
// set grows to three in place. Members are never removed here.
//
// A member is healthy while the set has a primary and this member is that
// primary or one of its secondaries, so the app services start once retryable
// writes and majority writes work. Credentials are read from the container's
// environment, never from arguments.

const admin = db.getSiblingDB("admin");
admin.auth(process.env.MONGO_INITDB_ROOT_USERNAME, process.env.MONGO_INITDB_ROOT_PASSWORD);

const replicaSet = process.env.MONGO_REPLICA_SET || "rs0";
const advertisedHost = process.env.MONGO_ADVERTISED_HOST || "mongo:27017";
const members = (process.env.MONGO_REPLICA_SET_MEMBERS || advertisedHost)
  .split(",").map((host) => host.trim()).filter((host) => host.length > 0);

function initiateOnce() {
  try {
    admin.runCommand({ replSetGetStatus: 1 });
    return;
  } catch (error) {
    if (error.codeName !== "NotYetInitialized") {
      throw error;
    }
  }
  if (members[0] !== advertisedHost) {
    print(`waiting for ${members[0]} to initiate replica set ${replicaSet}`);
    quit(1);
  }
  // Fails (and is tried again on the next run) until every member answers.
  admin.runCommand({
    replSetInitiate: {
      _id: replicaSet,
      members: members.map((host, index) => ({ _id: index, host: host })),
      // A new primary takes writes at once (callqueue writes with w: "majority", so catch-up
      // could only save writes nobody was told about), and heartbeats every 100 ms keep
      // majority writes moving while a frozen member holds a secondary's progress reports.
      settings: { catchUpTimeoutMillis: 0, heartbeatIntervalMillis: 100 },
    },
  });
  print(`initiated replica set ${replicaSet} with members ${members.join(", ")}`);
}

function addOneMissingMember(hello) {
  if (!hello.isWritablePrimary) {
    return;
  }
  const config = admin.runCommand({ replSetGetConfig: 1 }).config;
  const present = config.members.map((member) => member.host);
  if (!members.includes(hello.me)) {
    print(`this member is ${hello.me}, not one of ${members.join(", ")}: add members by hand`);
    return;
  }
  const missing = members.filter((host) => !present.includes(host));
  if (missing.length === 0) {
    return;
  }
  config.members.push({ _id: Math.max(...config.members.map((member) => member._id)) + 1, host: missing[0] });
  config.version += 1;
  try {
    admin.runCommand({ replSetReconfig: config });
    print(`added ${missing[0]} to replica set ${replicaSet}`);
  } catch (error) {
    // Tried again on the next run; the set keeps working meanwhile.
    print(`could not add ${missing[0]} to replica set ${replicaSet} yet: ${error.message}`);
  }
}

initiateOnce();
const hello = admin.runCommand({ hello: 1 });
if (hello.setName !== replicaSet || !(hello.isWritablePrimary || hello.secondary) || !hello.primary) {
  print(`not yet a member of ${replicaSet} with a writable primary`);
  quit(1);
}
addOneMissingMember(hello);
print(`${hello.isWritablePrimary ? "primary" : "secondary"} of ${replicaSet}; primary is ${hello.primary}`);
