"use strict";
/**
 * Node.js assistants drain a call session through the real workers.
 *
 *   node drain.js [--session ID] [--students 300] [--assistants 20]
 *
 * Imports the students, lets every assistant press "Get Next" at the same
 * time, then record each call and get the next student in one request
 * (complete_and_next) until the session is exhausted, sends one hostile
 * session id, and prints one JSON summary line. Exit status 0 only when
 * every student was completed, none was handed out twice, the hostile id was
 * answered with `rejected`, and no answer was left in the result backend.
 * Servers come from CELERY_BROKER_URL and CELERY_RESULT_BACKEND.
 */
const { randomUUID } = require("node:crypto");
const { CallqueueClient, Rejected } = require("./callqueue");

/** Rejections an assistant can meet in normal work, and what each means for the loop. */
const ON_REJECTION = {
  stale_token: "next", // the hold was reclaimed and handed out again: ask for the next student
  not_holder: "next",
  not_assigned: "next",
  already_completed: "next",
  session_closed: "stop", // the session was closed: this assistant is done
  unknown_session: "stop",
};

function options(argv) {
  const found = { session: `node-${randomUUID().slice(0, 12)}`, students: 300, assistants: 20 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in found) || argv[i + 1] === undefined) throw new Error(`unknown or incomplete option ${argv[i]}`);
    found[key] = key === "session" ? argv[i + 1] : Number.parseInt(argv[i + 1], 10);
  }
  return found;
}

function studentRows(count) {
  return Array.from({ length: count }, (_, n) => ({
    student_id: `n${String(n).padStart(5, "0")}`, name: `Student ${n}`, phone: `+1555${String(n).padStart(7, "0")}`,
  }));
}

/** Count a rejection an assistant can meet in normal work; true when it ends this assistant's work. */
function rejected(error, tally) {
  if (!(error instanceof Rejected) || !ON_REJECTION[error.code]) throw error;
  tally.rejections[error.code] = (tally.rejections[error.code] || 0) + 1;
  return ON_REJECTION[error.code] === "stop";
}

/** A press on its own: the student, null when nobody is left, undefined when the assistant must stop. */
async function press(client, session, assistantId, tally) {
  try {
    return await client.assignNext(session, assistantId);
  } catch (error) {
    return rejected(error, tally) ? undefined : press(client, session, assistantId, tally);
  }
}

/**
 * One assistant: press "Get Next" once, then record each call and get the next student in one request
 * (completeAndNext) until the session is exhausted.
 */
async function assistant(client, session, assistantId, tally) {
  let student = await press(client, session, assistantId, tally);
  while (student) {
    tally.handedOut.set(student.student_id, (tally.handedOut.get(student.student_id) || 0) + 1);
    let next;
    try {
      ({ next } = await client.completeAndNext(session, student.student_id, assistantId, "reached",
        student.assignment_token));
      tally.completed += 1;
    } catch (error) {
      if (rejected(error, tally)) return;
      student = await press(client, session, assistantId, tally); // the completion was refused: press anew
      continue;
    }
    if (next.status === "rejected") {
      if (rejected(new Rejected("callqueue.complete_and_next", next.error), tally)) return;
      student = await press(client, session, assistantId, tally);
    } else {
      student = next.status === "exhausted" ? null : next;
    }
  }
  if (student === null) tally.exhausted += 1;
}

/** A session id that is a MongoDB operator: the worker must refuse it, not run it as a query. */
async function hostile(client) {
  try {
    const answer = await client.assignNext({ $ne: null }, "mallory");
    return { status: answer === null ? "exhausted" : answer.status };
  } catch (error) {
    if (error instanceof Rejected) return { status: "rejected", code: error.code };
    throw error;
  }
}

async function main() {
  const { session, students, assistants } = options(process.argv.slice(2));
  const client = new CallqueueClient({
    brokerUrl: process.env.CELERY_BROKER_URL, backendUrl: process.env.CELERY_RESULT_BACKEND,
  });
  const published = []; // every task id this run sent, to check that no answer was left behind
  const publish = client.publish.bind(client);
  client.publish = async (...args) => {
    const id = await publish(...args);
    published.push(id);
    return id;
  };
  try {
    const imported = await client.importStudents(session, studentRows(students), "Node.js drain");
    const tally = { handedOut: new Map(), completed: 0, exhausted: 0, rejections: {} };
    const started = process.hrtime.bigint();
    const names = Array.from({ length: assistants }, (_, n) => `node-assistant-${n}`);
    await Promise.all(names.map((name) => assistant(client, session, name, tally)));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const stats = await client.stats(session);
    const summary = {
      session, students, assistants, inserted: imported.inserted,
      handed_out: tally.handedOut.size,
      handed_out_twice: [...tally.handedOut.values()].filter((count) => count > 1).length,
      completed: tally.completed, exhausted_answers: tally.exhausted, rejections: tally.rejections,
      stats: { pending: stats.pending, assigned: stats.assigned, completed: stats.completed },
      hostile: await hostile(client), seconds: Math.round(seconds * 1000) / 1000,
      requests: published.length,
    };
    summary.answers_left = await client.celery.backend.redis.exists(
      ...published.map((id) => `celery-task-meta-${id}`));
    console.log(JSON.stringify(summary));
    const ok = summary.completed === students && summary.handed_out_twice === 0
      && stats.completed === students && summary.hostile.status === "rejected" && summary.answers_left === 0;
    process.exitCode = ok ? 0 : 1;
  } finally {
    await client.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 2;
});
