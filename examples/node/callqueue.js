"use strict";
/**
 * Calling the callqueue tasks from Node.js with celery-node.
 *
 * celery-node's sendTask() writes a protocol-2 JSON message, but always to the
 * queue the client was created with and without `expires`. Our tasks live on
 * two queues ("assignments", "batch") and a "Get Next" press must expire with
 * the caller's patience, so publish() builds the message with celery-node and
 * sends it itself: the task's queue from contract/tasks.json and an absolute
 * ISO 8601 `expires` header. Results are read from the Redis result backend by
 * celery-node's AsyncResult.get(), which polls the task's result key.
 *
 * Every answer is checked against contract/ before it is used; a `rejected`
 * answer becomes a Rejected error carrying the rejection code. Once read, an
 * answer is deleted from the result backend: otherwise Redis keeps it for
 * CALLQUEUE_RESULT_EXPIRES_SECONDS (an hour by default), about 1.5 kB each.
 */
const { randomUUID } = require("node:crypto");
const { createClient } = require("celery-node");
const { loadContract } = require("./contract");

/** The task refused the request and changed nothing; `code` says why. */
class Rejected extends Error {
  constructor(task, error) {
    super(`${task} rejected: ${error.code}: ${error.message}`);
    this.name = "Rejected";
    this.code = error.code;
    this.details = error.details;
  }
}

/** No answer came in time, even after resending. Resending the same request later is safe. */
class NoAnswer extends Error {}

/** The task ended in FAILURE (for example MongoDB stayed unreachable through all retries). */
class TaskFailed extends Error {}

const UNANSWERED = new Set(["TIMEOUT", "REVOKED"]);

class CallqueueClient {
  /**
   * @param {object} options
   * @param {string} options.brokerUrl     CELERY_BROKER_URL (Redis)
   * @param {string} options.backendUrl    CELERY_RESULT_BACKEND (Redis)
   * @param {number} [options.timeoutMs]   how long one attempt waits; its message expires then too
   * @param {number} [options.retries]     resends of a request that got no answer
   * @param {number} [options.jobTimeoutMs] how long a batch-queue job (an import) may take
   * @param {number} [options.pollMs]      how often the result key is read
   */
  constructor({ brokerUrl, backendUrl, timeoutMs = 10000, retries = 3, jobTimeoutMs = 120000, pollMs = 25 }) {
    this.celery = createClient(brokerUrl, backendUrl);
    this.contract = loadContract();
    Object.assign(this, { timeoutMs, retries, jobTimeoutMs, pollMs });
  }

  /** Publish one task message on the task's queue; resolves with its task id once Redis has it. */
  async publish(task, kwargs, expiresInMs) {
    const id = randomUUID();
    const message = this.celery.createTaskMessage(id, task, [], kwargs);
    message.headers.expires = new Date(Date.now() + expiresInMs).toISOString();
    await this.celery.isReady();
    await this.celery.broker.publish(message.body, "", this.contract.queue(task), message.headers, message.properties);
    return id;
  }

  /** Wait for task id's answer, then delete it from the backend; null when none came in time or the message
   *  expired unrun. */
  async answer(id, waitMs) {
    try {
      const result = await this.celery.asyncResult(id).get(waitMs, this.pollMs);
      await this.forget(id);
      return result;
    } catch (error) {
      if (error.message === "REVOKED") await this.forget(id); // stored too: the message expired unrun
      if (UNANSWERED.has(error.message)) return null;
      if (error.message === "FAILURE") throw new TaskFailed(`task ${id} failed: ${JSON.stringify(error)}`);
      throw error;
    }
  }

  /** Delete task id's stored answer (what Celery's AsyncResult.forget() does); best effort, it expires anyway. */
  async forget(id) {
    try {
      await this.celery.backend.redis.del(`celery-task-meta-${id}`);
    } catch (error) {
      // the answer is in hand, and a key left behind still expires on its own
    }
  }

  /**
   * Send task with keyword arguments and return its checked answer, resending
   * the same arguments when no answer came (every task is safe to repeat).
   * Throws Rejected for a `rejected` answer.
   */
  async call(task, kwargs) {
    for (let attempt = 0; attempt <= this.retries; attempt += 1) {
      const result = await this.answer(await this.publish(task, kwargs, this.timeoutMs), this.timeoutMs);
      if (result !== null) return this.checked(task, result);
    }
    throw new NoAnswer(`${task}: no answer after ${this.retries + 1} attempts of ${this.timeoutMs} ms`);
  }

  /** Send a batch-queue job once and wait for it (a long job may still be running, so it is not resent). */
  async job(task, kwargs) {
    const result = await this.answer(await this.publish(task, kwargs, this.jobTimeoutMs), this.jobTimeoutMs);
    if (result === null) throw new NoAnswer(`${task}: no answer within ${this.jobTimeoutMs} ms`);
    return this.checked(task, result);
  }

  checked(task, result) {
    this.contract.checkResult(task, result);
    if (result.status === "rejected") throw new Rejected(task, result.error);
    return result;
  }

  /** Add students to the session (creating it); the same rows again add nothing. */
  importStudents(callSessionId, students, sessionName = null) {
    return this.job("callqueue.import_students",
      { call_session_id: callSessionId, students, session_name: sessionName });
  }

  /**
   * One "Get Next" press: the assistant's student, or null when the session is exhausted.
   * One request_id per press; call() resends it unchanged, so a retry never claims a second student.
   */
  async assignNext(callSessionId, assistantId, requestId = randomUUID()) {
    const result = await this.press(callSessionId, assistantId, requestId);
    return result.status === "exhausted" ? null : result;
  }

  /**
   * One "Get Next" press, answered as the task answers it: `assigned`, or `exhausted` with `reason`
   * (scheduled, held, none_left), `next_due_at`, `scheduled` and `held_by_others`.
   */
  press(callSessionId, assistantId, requestId = randomUUID()) {
    return this.call("callqueue.assign_next_student",
      { call_session_id: callSessionId, assistant_id: assistantId, request_id: requestId });
  }

  /**
   * Record the call's outcome and get the next student in one request ("save and next").
   * Resolves with { completion, next }: `next` is the `assigned` or `exhausted` answer of the press, or
   * the `rejected` answer that refused it (the completion stands). A refused completion throws Rejected
   * and claims nothing. Resent unchanged (same request_id), it gets the same pair.
   */
  async completeAndNext(callSessionId, studentId, assistantId, outcome, assignmentToken,
    requestId = randomUUID()) {
    const result = await this.call("callqueue.complete_and_next", {
      call_session_id: callSessionId, student_id: studentId, assistant_id: assistantId,
      outcome, assignment_token: assignmentToken, request_id: requestId,
    });
    return { completion: result.completion, next: result.next };
  }

  /** Record the call's outcome for a student the assistant holds. */
  complete(callSessionId, studentId, assistantId, outcome, assignmentToken) {
    return this.call("callqueue.complete_student", {
      call_session_id: callSessionId, student_id: studentId, assistant_id: assistantId,
      outcome, assignment_token: assignmentToken,
    });
  }

  /** Give a held student back to the pool. */
  release(callSessionId, studentId, assistantId, assignmentToken) {
    return this.call("callqueue.release_student", {
      call_session_id: callSessionId, student_id: studentId, assistant_id: assistantId,
      assignment_token: assignmentToken,
    });
  }

  /** Pending, assigned and completed counts of the session. */
  stats(callSessionId) {
    return this.call("callqueue.session_stats", { call_session_id: callSessionId });
  }

  /** Close the broker and backend connections. */
  close() {
    return this.celery.disconnect();
  }
}

module.exports = { CallqueueClient, Rejected, NoAnswer, TaskFailed };
