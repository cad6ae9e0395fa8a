import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type pg from 'pg';
import { member } from '../auth/plugin.js';
import { withTransaction } from '../db/pool.js';
import { notFound } from '../http/errors.js';
import { authErrors, IdParams, iso, Timestamp } from '../http/schemas.js';
import * as repo from './repo.js';

const Platform = z.enum(['ios', 'android', 'web']);

const Device = z
  .object({ id: z.uuid(), platform: Platform, created_at: Timestamp, last_seen_at: Timestamp })
  .meta({ id: 'Device' });

const RegisteredDevice = Device.extend({
  device_secret: z.string().optional().describe(
    'Shown once, when this registration issued it (a new device row, or an older row that had none): keep it in the '
    + "install's secure storage and send it as previous_device_secret when another account signs in on this install",
  ),
}).meta({ id: 'RegisteredDevice' });

const DeviceBody = z.strictObject({
  token: z.string().trim().min(1).max(4096),
  platform: Platform,
  // Any string: a wrong or malformed secret is answered exactly like no secret, never with a 400
  // that would tell a guesser something.
  previous_device_secret: z.string().min(1).max(200).nullable().optional().describe(
    "the device_secret this install was given before (under any account): moves the token from that account's device to the caller",
  ),
});

// The push token itself is never echoed back: it is a credential for reaching the phone.
const deviceOut = (d: repo.DeviceRow) => ({ id: d.id, platform: d.platform as 'ios', created_at: iso(d.created_at), last_seen_at: iso(d.last_seen_at) });

export type DeviceRouteDeps = { pool: pg.Pool };

export function deviceRoutes(app: FastifyInstance, deps: DeviceRouteDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const secured = { preHandler: app.requireMember };
  const security = [{ bearerAuth: [] }];
  const tags = ['devices'];

  r.get('/v1/devices', {
    ...secured,
    schema: { tags, summary: "The caller's registered push devices", security, response: { 200: z.object({ data: z.array(Device) }), ...authErrors } },
  }, async (req) => ({ data: (await repo.listDevices(deps.pool, member(req).id)).map(deviceOut) }));

  r.post('/v1/devices', {
    ...secured,
    schema: {
      tags,
      summary: 'Register a push token: 201 with a device_secret for a token new to the caller (whoever else holds it), 200 when the caller already holds it',
      security,
      body: DeviceBody,
      response: { 200: RegisteredDevice, 201: RegisteredDevice, ...authErrors },
    },
  }, async (req, reply) => {
    const { token, platform, previous_device_secret: proof } = req.body;
    // One transaction: the member row a first request creates goes with the device, or neither.
    const reg = await withTransaction(deps.pool, (tx) => repo.registerDevice(tx, member(req), token, platform, proof ?? undefined));
    return reply.code(reg.created ? 201 : 200).send({ ...deviceOut(reg.device), ...(reg.secret === undefined ? {} : { device_secret: reg.secret }) });
  });

  r.delete('/v1/devices/:id', {
    ...secured,
    schema: { tags, summary: 'Forget a push token', security, params: IdParams, response: { 204: z.null(), ...authErrors } },
  }, async (req, reply) => {
    if (!(await repo.deleteDevice(deps.pool, member(req).id, req.params.id))) throw notFound('device');
    return reply.code(204).send(null);
  });
}
