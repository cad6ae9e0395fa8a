// A worker process of the chaos run: the production worker (src/boot.ts, as `npm run
// start:worker` runs it), with SendGrid and Twilio configured from the environment like any
// deployment, and push going to the fake FCM server through the channel's `connect` seam (the
// Firebase SDK has no endpoint setting; a real deployment reaches fcm.googleapis.com over TLS).
//   CHAOS_FCM_PORT, CHAOS_FCM_PROJECT, CHAOS_FCM_TOKEN: where the fake listens and what it accepts.
import net from 'node:net';
import { boot } from '../../src/boot.js';
import { createChannels } from '../../src/channels/index.js';
import { createFcmChannel } from '../../src/channels/push-fcm/index.js';

const port = Number(process.env.CHAOS_FCM_PORT);
const projectId = process.env.CHAOS_FCM_PROJECT ?? '';
const accessToken = process.env.CHAOS_FCM_TOKEN ?? '';
if (!Number.isInteger(port) || projectId === '' || accessToken === '') {
  process.stderr.write('chaos worker: CHAOS_FCM_PORT, CHAOS_FCM_PROJECT and CHAOS_FCM_TOKEN are required\n');
  process.exit(1);
}

await boot({ api: false, worker: true }, {
  channels: (pool, config, log) => ({
    ...createChannels({ pool, config, log }).channels,
    push: createFcmChannel({
      pool, log, projectId,
      credential: { getAccessToken: async () => ({ access_token: accessToken, expires_in: 3600 }) },
      connect: () => net.connect(port, '127.0.0.1'),
    }),
  }),
});
