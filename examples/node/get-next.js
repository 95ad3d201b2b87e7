// get-next.js: one "Get Next" press from Node.js with celery-node.
// Usage: node get-next.js SESSION ASSISTANT  (servers from CELERY_BROKER_URL, CELERY_RESULT_BACKEND)
const { randomUUID } = require("node:crypto");
const { createClient } = require("celery-node");

const client = createClient(process.env.CELERY_BROKER_URL, process.env.CELERY_RESULT_BACKEND);
const TIMEOUT_MS = 10000;

// Publish on the task's own queue with an absolute expiry, then wait for the answer.
async function send(task, queue, kwargs) {
  const id = randomUUID();
  const message = client.createTaskMessage(id, task, [], kwargs); // Celery protocol 2, JSON
  message.headers.expires = new Date(Date.now() + TIMEOUT_MS).toISOString();
  await client.isReady();
  await client.broker.publish(message.body, "", queue, message.headers, message.properties);
  const answer = await client.asyncResult(id).get(TIMEOUT_MS, 50); // rejects with "TIMEOUT", "REVOKED" or "FAILURE"
  await client.backend.redis.del(`celery-task-meta-${id}`); // read: Redis need not keep it for an hour
  return answer;
}

// One press = one request_id; resending it unchanged can never claim a second student.
async function getNext(session, assistant) {
  const kwargs = { call_session_id: session, assistant_id: assistant, request_id: randomUUID() };
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      return await send("callqueue.assign_next_student", "assignments", kwargs);
    } catch (error) {
      if (error.message !== "TIMEOUT" && error.message !== "REVOKED") throw error;
    }
  }
  throw new Error("no answer after 3 attempts");
}

getNext(process.argv[2], process.argv[3])
  .then((answer) => console.log(JSON.stringify(answer))) // assigned, exhausted or rejected
  .finally(() => client.disconnect());
