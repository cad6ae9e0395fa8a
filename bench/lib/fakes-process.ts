// The provider fakes in their own process (bench/lib/fakes-child.ts, through tsx's loader like
// the servers in processes.ts), so the CPU they spend answering is not the bench's and does not
// slow the pipeline or the direct-send floor they measure. The bench talks to them over the IPC
// channel: where they listen, and after a phase every message they accepted with its time.
import { spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Credential } from 'firebase-admin/app';
import { ROOT } from './processes.js';

export type FakeChannel = 'push' | 'email' | 'sms';

/** One message a fake accepted. */
export type AcceptedRecord = {
  channel: FakeChannel;
  /** The provider's message id (FCM name, SendGrid X-Message-Id, Twilio sid). */
  id: string;
  /** FCM: the device token; SendGrid: the recipients; Twilio: the number. */
  to: string;
  /** Ours, where the request carries them (FCM data, SendGrid custom_args); Twilio: null. */
  deliveryId: string | null;
  incidentId: string | null;
  /** Date.now() in the fakes' process when the fake recorded it accepted, right before answering. */
  at: number;
};

export type SampleMessage = { subject: string | null; body: string; html: string | null; data: Record<string, string> | null };
export type SampleText = Record<FakeChannel, SampleMessage | null>;

export type FakeEndpoints = {
  fcm: { port: number; projectId: string; accessToken: string };
  sendgrid: { url: string; apiKey: string };
  twilio: { url: string; accountSid: string; authToken: string };
};

export type ParentRequest = { type: 'take'; seq: number } | { type: 'sample'; seq: number } | { type: 'stop' };
export type ChildReply =
  | { type: 'ready'; endpoints: FakeEndpoints }
  | { type: 'taken'; seq: number; records: AcceptedRecord[] }
  | { type: 'sample'; seq: number; sample: SampleText };

export type FakesProcess = {
  pid: number;
  endpoints: FakeEndpoints;
  /** What the FCM channel's `connect` option dials. */
  fcmConnect: () => net.Socket;
  /** A credential for the FCM channel that needs no network. */
  fcmCredential: () => Credential;
  /** Every message accepted since the previous take. */
  take: () => Promise<AcceptedRecord[]>;
  /** The first message each fake accepted (its text), to send the same text again. */
  sample: () => Promise<SampleText>;
  stop: () => Promise<void>;
};

export async function startFakesProcess(opts: { latencyMs: number }): Promise<FakesProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'lib', 'fakes-child.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), FAKES_LATENCY_MS: String(opts.latencyMs) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const endpoints = await new Promise<FakeEndpoints>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the fakes process did not start within 60 s')), 60_000);
    child.once('exit', (code) => reject(new Error(`the fakes process exited with code ${code}`)));
    child.once('message', (m: ChildReply) => {
      clearTimeout(timer);
      if (m.type === 'ready') resolve(m.endpoints);
      else reject(new Error(`the fakes process said ${m.type} before ready`));
    });
  });
  let seq = 0;
  const ask = <T extends ChildReply['type']>(type: 'take' | 'sample') => new Promise<Extract<ChildReply, { type: T }>>((resolve, reject) => {
    const id = ++seq;
    const onMessage = (m: ChildReply) => {
      if ('seq' in m && m.seq === id) {
        child.off('message', onMessage);
        resolve(m as Extract<ChildReply, { type: T }>);
      }
    };
    child.on('message', onMessage);
    if (!child.send({ type, seq: id } satisfies ParentRequest)) reject(new Error('the fakes process is gone'));
  });
  return {
    pid: child.pid!,
    endpoints,
    fcmConnect: () => net.connect(endpoints.fcm.port, '127.0.0.1'),
    fcmCredential: () => ({ getAccessToken: async () => ({ access_token: endpoints.fcm.accessToken, expires_in: 3600 }) }),
    take: async () => (await ask<'taken'>('take')).records,
    sample: async () => (await ask<'sample'>('sample')).sample,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.send({ type: 'stop' } satisfies ParentRequest);
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(killer);
      }
    },
  };
}
