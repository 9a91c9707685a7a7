// Node's side of the BullMQ interop tests: Node BullMQ (and Bull Board) as a Node team uses them.
// Run by tests/test_interop_bullmq.py with NODE_PATH at the `npm ci` cache. One JSON line on stdout.
//
//   node interop.cjs produce  REDIS_JSON QUEUE ENVELOPE_JSON   add a job, wait for its return value
//   node interop.cjs work     REDIS_JSON QUEUE COUNT           answer COUNT jobs as an escavador would
//   node interop.cjs job      REDIS_JSON QUEUE JOB_ID          a job's state, failedReason, attempts
//   node interop.cjs board    REDIS_JSON PORT QUEUE...         Bull Board on 127.0.0.1:PORT
"use strict";

const crypto = require("node:crypto");
const { Queue, QueueEvents, Worker } = require("bullmq");

const [command, redisJson, ...rest] = process.argv.slice(2);
const connection = JSON.parse(redisJson); // {host, port, db, password?}

function say(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

async function produce(queueName, envelopeJson) {
  const queue = new Queue(queueName, { connection });
  const events = new QueueEvents(queueName, { connection });
  await events.waitUntilReady();
  const envelope = JSON.parse(envelopeJson);
  const job = await queue.add(envelope.tipo_evento, envelope);
  const returnvalue = await job.waitUntilFinished(events, 60000);
  say({ id: job.id, returnvalue });
  await events.close();
  await queue.close();
}

async function work(queueName, count) {
  let left = Number(count);
  const answered = [];
  const queues = new Map();
  const done = new Promise((resolve) => {
    const worker = new Worker(
      queueName,
      async (job) => {
        const pedido = job.data;
        const resultado = {
          correlation_id: pedido.correlation_id,
          tipo_evento: pedido.tipo_evento.replace("iniciar_", "resultado_"),
          payload: { dobro: pedido.payload.param * 2, por: "node" },
          timestamp: new Date().toISOString(),
          message_id: crypto.randomUUID(),
          causation_id: pedido.message_id,
          alvo: pedido.alvo,
          status: "ok",
        };
        // The answer goes where the envelope asks, as any worker's does, and is the return value.
        const target = pedido.responder_para || "orquestrador_resultados";
        if (!queues.has(target)) queues.set(target, new Queue(target, { connection }));
        await queues.get(target).add(resultado.tipo_evento, resultado, { jobId: resultado.message_id });
        answered.push(job.id);
        return resultado;
      },
      { connection },
    );
    worker.on("completed", async () => {
      left -= 1;
      if (left === 0) {
        await worker.close();
        resolve();
      }
    });
  });
  await done;
  for (const queue of queues.values()) await queue.close();
  say({ answered });
}

async function inspect(queueName, jobId) {
  const queue = new Queue(queueName, { connection });
  const job = await queue.getJob(jobId);
  say(job ? { state: await job.getState(), failedReason: job.failedReason, attemptsMade: job.attemptsMade, data: job.data } : null);
  await queue.close();
}

async function board(port, queueNames) {
  const express = require("express");
  const { createBullBoard } = require("@bull-board/api");
  const { BullMQAdapter } = require("@bull-board/api/bullMQAdapter");
  const { ExpressAdapter } = require("@bull-board/express");
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath("/");
  const queues = queueNames.map((name) => new BullMQAdapter(new Queue(name, { connection })));
  createBullBoard({ queues, serverAdapter });
  const app = express();
  app.use("/", serverAdapter.getRouter());
  app.listen(Number(port), "127.0.0.1", () => say({ listening: Number(port) }));
}

const commands = {
  produce: () => produce(rest[0], rest[1]),
  work: () => work(rest[0], rest[1]),
  job: () => inspect(rest[0], rest[1]),
  board: () => board(rest[0], rest.slice(1)),
};

commands[command]().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});
