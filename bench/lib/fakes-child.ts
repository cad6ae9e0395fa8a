// The provider fakes (FCM, SendGrid, Twilio, as tests/fakes has them) in a process of their own,
// so their CPU is not the bench's: started by bench/lib/fakes-process.ts with an IPC channel.
// It says where each fake listens ('ready'), then answers 'take' with every message accepted
// since the previous take (channel, address, our delivery and incident ids where the request
// carries them, acceptance time) and 'sample' with one accepted message's text per channel.
// It exits on 'stop' or when the parent goes away.
import { startFakeFcm } from '../../tests/fakes/fcm.js';
import { startFakeSendGrid } from '../../tests/fakes/sendgrid.js';
import { startFakeTwilio } from '../../tests/fakes/twilio.js';
import type { AcceptedRecord, ChildReply, ParentRequest, SampleText } from './fakes-process.js';

const latencyMs = Number(process.env.FAKES_LATENCY_MS ?? '20');
if (process.send === undefined) {
  process.stderr.write('fakes-child: start me through bench/lib/fakes-process.ts (needs an IPC channel)\n');
  process.exit(2);
}
const send = (reply: ChildReply) => process.send!(reply);

const [fcm, sendgrid, twilio] = await Promise.all([
  startFakeFcm({ latencyMs }), startFakeSendGrid({ latencyMs }), startFakeTwilio({ latencyMs }),
]);

/**
 * When each fake recorded a message as accepted, right before it writes its answer: one clock for
 * all three (Twilio's own record holds when the request arrived, before its latency). Observes the
 * fakes' append-only `accepted` lists without changing what they do.
 */
function stampPushes<T>(list: T[]): number[] {
  const at: number[] = [];
  const push = list.push.bind(list);
  list.push = (...items: T[]) => {
    const now = Date.now();
    for (let i = 0; i < items.length; i++) at.push(now);
    return push(...items);
  };
  return at;
}
const acceptedAt = { push: stampPushes(fcm.accepted), email: stampPushes(sendgrid.accepted), sms: stampPushes(twilio.accepted) };

// Where the previous take stopped in each fake's list of accepted messages.
const taken = { push: 0, email: 0, sms: 0 };

function take(): AcceptedRecord[] {
  const out: AcceptedRecord[] = [];
  for (let i = taken.push; i < fcm.accepted.length; i++) {
    const m = fcm.accepted[i]!;
    const data = (m.message.data ?? {}) as Record<string, string>;
    out.push({ channel: 'push', id: m.name, to: m.token, deliveryId: data.delivery_id ?? null, incidentId: data.incident_id ?? null, at: acceptedAt.push[i]! });
  }
  for (let i = taken.email; i < sendgrid.accepted.length; i++) {
    const m = sendgrid.accepted[i]!;
    out.push({ channel: 'email', id: m.messageId, to: m.to.join(','), deliveryId: m.customArgs.delivery_id ?? null, incidentId: m.customArgs.incident_id ?? null, at: acceptedAt.email[i]! });
  }
  for (let i = taken.sms; i < twilio.accepted.length; i++) {
    const m = twilio.accepted[i]!;
    // Twilio's request carries none of our ids: the bench maps it by address.
    out.push({ channel: 'sms', id: m.sid, to: m.to, deliveryId: null, incidentId: null, at: acceptedAt.sms[i]! });
  }
  taken.push = fcm.accepted.length;
  taken.email = sendgrid.accepted.length;
  taken.sms = twilio.accepted.length;
  return out;
}

function sample(): SampleText {
  const p = fcm.accepted[0]?.message as { notification?: { title?: string; body?: string }; data?: Record<string, string> } | undefined;
  const e = sendgrid.accepted[0];
  const s = twilio.accepted[0];
  return {
    push: p === undefined ? null : { subject: p.notification?.title ?? null, body: p.notification?.body ?? '', html: null, data: p.data ?? null },
    email: e === undefined ? null : { subject: e.subject, body: e.content.find((c) => c.type === 'text/plain')?.value ?? '', html: e.content.find((c) => c.type === 'text/html')?.value ?? null, data: null },
    sms: s === undefined ? null : { subject: null, body: s.body, html: null, data: null },
  };
}

async function stop(): Promise<void> {
  await Promise.allSettled([fcm.close(), sendgrid.close(), twilio.close()]);
  process.exit(0);
}

process.on('message', (msg: ParentRequest) => {
  if (msg.type === 'take') send({ type: 'taken', seq: msg.seq, records: take() });
  else if (msg.type === 'sample') send({ type: 'sample', seq: msg.seq, sample: sample() });
  else if (msg.type === 'stop') void stop();
});
process.on('disconnect', () => void stop());

send({
  type: 'ready',
  endpoints: {
    fcm: { port: fcm.port, projectId: fcm.projectId, accessToken: fcm.accessToken },
    sendgrid: { url: sendgrid.url, apiKey: sendgrid.apiKey },
    twilio: { url: twilio.url, accountSid: twilio.accountSid, authToken: twilio.authToken },
  },
});
