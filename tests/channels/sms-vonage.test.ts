import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Vonage } from '@vonage/server-sdk';
import { createVonageChannel, VONAGE_PROVIDER, vonageChannelFromConfig, type VonageChannelOptions } from '../../src/channels/sms-vonage/index.js';
import { receiptErrorMeaning } from '../../src/channels/sms-vonage/errors.js';
import { verifyVonageSignature } from '../../src/channels/sms-vonage/signature.js';
import { ChannelError, type Channel, type OutboundMessage } from '../../src/channels/types.js';
import { ConfigError, loadConfig, VONAGE_SIGNATURE_METHODS } from '../../src/config.js';
import { createLogger } from '../../src/observability/logger.js';
import { testConfig } from '../helpers/app.js';
import { waitFor } from '../delivery/fake-provider.js';
import { signedReceipt, startFakeVonage, VONAGE_TEST_NUMBERS, type FakeVonage } from '../fakes/vonage.js';

const log = createLogger('silent');
const FROM = '+447700900000';
const CALLBACK = 'http://pruuf.test/webhooks/vonage/status';

describe('the Vonage SMS channel against a local Vonage SMS API, through the SDK', () => {
  let fake: FakeVonage;

  beforeAll(async () => {
    fake = await startFakeVonage();
  });
  afterAll(async () => {
    await fake.close();
  });

  const channel = (over: Partial<VonageChannelOptions> = {}): Channel => createVonageChannel({
    apiKey: fake.apiKey, apiSecret: fake.apiSecret, apiBase: fake.url, from: FROM, statusCallbackUrl: CALLBACK,
    validitySeconds: 1800, log, ...over,
  });
  let phones = 0;
  const newPhone = () => `+4477009${String(10_000 + phones++).padStart(5, '0')}`;
  const msg = (to: string, body = 'Ann missed her 09:30 check-in. Open https://pruuf.test/a/x'): OutboundMessage => ({
    deliveryId: randomUUID(), channel: 'sms', to, subject: null, body, html: null, kind: 'alert', incidentId: null,
  });
  const failure = async (p: Promise<unknown>): Promise<ChannelError> => {
    try {
      await p;
    } catch (err) {
      if (err instanceof ChannelError) return err;
      throw err;
    }
    throw new Error('expected the send to fail');
  };
  const seconds = (ms: number) => AbortSignal.timeout(ms);
  async function withFaults<T>(faults: Parameters<FakeVonage['setFaults']>[0], fn: () => Promise<T>): Promise<T> {
    fake.setFaults(faults);
    try {
      return await fn();
    } finally {
      fake.setFaults({});
    }
  }

  it('hands the message to Vonage and returns its message id, with our delivery id as client-ref', async () => {
    const to = newPhone();
    const m = msg(to);
    const result = await channel().send(m, seconds(5000));
    expect(result.provider).toBe(VONAGE_PROVIDER);
    const sent = fake.accepted.find((x) => x.clientRef === m.deliveryId)!;
    expect(result.providerMessageId).toBe(sent.messageIds[0]);
    expect(sent).toMatchObject({
      to: to.slice(1), from: FROM.slice(1), text: m.body, type: 'text', callback: CALLBACK, ttl: '1800000', statusReportReq: 'true',
      auth: 'basic', contentType: 'application/json',
    });
  });

  it('sends text that is not GSM-7 as unicode, and returns the first id of a message Vonage splits in parts', async () => {
    const body = `Ann a manqué son rappel 🙏 ${'ж'.repeat(80)}`;
    const m = msg(newPhone(), body);
    const result = await channel().send(m, seconds(5000));
    const sent = fake.accepted.find((x) => x.clientRef === m.deliveryId)!;
    expect(sent).toMatchObject({ type: 'unicode', text: body });
    expect(sent.messageIds).toHaveLength(2);
    expect(result.providerMessageId).toBe(sent.messageIds[0]);
  });

  it('sends GSM-7 text with its accents and the euro sign as plain text', async () => {
    const m = msg(newPhone(), 'Søren à Malmö: 5€ {ok}');
    await channel().send(m, seconds(5000));
    expect(fake.accepted.find((x) => x.clientRef === m.deliveryId)!.type).toBe('text');
  });

  it('sends from an alphanumeric sender id as it is, and asks for no receipt without a callback URL', async () => {
    const m = msg(newPhone());
    await channel({ from: 'Pruuf', statusCallbackUrl: undefined }).send(m, seconds(5000));
    expect(fake.accepted.find((x) => x.clientRef === m.deliveryId)).toMatchObject({ from: 'Pruuf', callback: null, statusReportReq: null });
  });

  it.each([
    ['an unrecognised number prefix (6)', VONAGE_TEST_NUMBERS.unknownPrefix, /not a valid phone number/],
    ['a barred number (7)', VONAGE_TEST_NUMBERS.barred, /barred/],
    ['a de-activated number (33)', VONAGE_TEST_NUMBERS.deactivated, /de-activated/],
  ])('fails %s permanently and names the address dead', async (_name, to, reason) => {
    const err = await failure(channel().send(msg(to), seconds(5000)));
    expect(err.errorClass).toBe('permanent');
    expect(err.deadAddress).toMatch(reason);
  });

  it.each([
    ['2', 'missing parameter'], ['3', 'invalid parameter'], ['12', 'message too long'],
  ])('fails status %s permanently without blaming the address (nothing says it is the number)', async (status, label) => {
    const to = newPhone();
    fake.setNumberStatus(to, { status, errorText: `refused ${to}` });
    const err = await failure(channel().send(msg(to), seconds(5000)));
    expect(err).toMatchObject({ errorClass: 'permanent', deadAddress: undefined });
    expect(err.message).toContain(label);
    // Vonage's error text quoted the number: it is not kept.
    expect(err.message).not.toContain(to.slice(1));
  });

  it.each([
    ['4', 'invalid credentials'], ['8', 'account barred'], ['9', 'out of credit'], ['15', 'sender id or number not allowed'], ['29', 'allow list'],
  ])('reports status %s as a configuration error: the operator must act, the contact keeps SMS', async (status, label) => {
    const to = newPhone();
    fake.setNumberStatus(to, { status, errorText: 'refused' });
    const err = await failure(channel().send(msg(to), seconds(5000)));
    expect(err).toMatchObject({ errorClass: 'configuration', deadAddress: undefined });
    expect(err.message).toContain(label);
  });

  it('reports wrong credentials (status 4 from Vonage) as a configuration error', async () => {
    const err = await failure(channel({ apiSecret: 'not-the-secret' }).send(msg(newPhone()), seconds(5000)));
    expect(err.errorClass).toBe('configuration');
    expect(err.message).toContain('status 4');
  });

  it('treats status 1 (throttled) as transient with a one-second wait', async () => {
    const err = await withFaults({ throttled: 1 }, () => failure(channel().send(msg(newPhone()), seconds(5000))));
    expect(err).toMatchObject({ errorClass: 'transient', retryAfterMs: 1000 });
  });

  it.each(['5', '10', '13', '42'])('treats status %s as transient', async (status) => {
    const to = newPhone();
    fake.setNumberStatus(to, { status, errorText: 'try later' });
    const err = await failure(channel().send(msg(to), seconds(5000)));
    expect(err).toMatchObject({ errorClass: 'transient', deadAddress: undefined });
  });

  it('treats an HTTP 500 as transient', async () => {
    const err = await withFaults({ error500: 1 }, () => failure(channel().send(msg(newPhone()), seconds(5000))));
    expect(err.errorClass).toBe('transient');
    expect(err.message).toContain('HTTP 500');
  });

  it("treats an HTTP 429 as transient and passes on Vonage's Retry-After", async () => {
    const err = await withFaults({ tooMany: 1, retryAfterSeconds: 7 }, () => failure(channel().send(msg(newPhone()), seconds(5000))));
    expect(err).toMatchObject({ errorClass: 'transient', retryAfterMs: 7000 });
  });

  it('reports an API base where no SMS API answers (404) as a configuration error', async () => {
    const err = await failure(channel({ apiBase: `${fake.url}/wrong-prefix` }).send(msg(newPhone()), seconds(5000)));
    expect(err.errorClass).toBe('configuration');
  });

  it('gives up on a slow Vonage when the signal fires, as a transient error, on time', async () => {
    fake.setLatency(3000);
    try {
      const started = Date.now();
      // The SDK's own timeout ends the request left behind, after the signal answered.
      const err = await failure(channel({ timeoutMs: 1000 }).send(msg(newPhone()), seconds(200)));
      expect(err.errorClass).toBe('transient');
      expect(err.message).toContain('no answer in time');
      expect(Date.now() - started).toBeLessThan(900);
    } finally {
      fake.setLatency(0);
    }
  });

  it("ends a request that never gets an answer with the SDK's own timeout when the signal never fires", async () => {
    const abandoned = fake.outcomes.abandoned ?? 0;
    const err = await withFaults({ hang: 1 }, async () => {
      const e = await failure(channel({ timeoutMs: 200 }).send(msg(newPhone()), new AbortController().signal));
      // The SDK cancelled its request: the connection closed, nothing left dangling.
      await waitFor(async () => ((fake.outcomes.abandoned ?? 0) > abandoned ? true : undefined), 2000);
      return e;
    });
    expect(err.errorClass).toBe('transient');
    expect(err.message).toContain('no answer in time');
  });

  it('treats a reset connection as transient', async () => {
    const err = await withFaults({ reset: 1 }, () => failure(channel().send(msg(newPhone()), seconds(5000))));
    expect(err.errorClass).toBe('transient');
  });

  it('sends nothing when the signal has already fired', async () => {
    const before = fake.requests();
    await expect(channel().send(msg(newPhone()), AbortSignal.abort())).rejects.toThrow();
    expect(fake.requests()).toBe(before);
  });

  it('is not configured without VONAGE_API_KEY; with it, receipts are asked for only when they can be verified', async () => {
    const env = { VONAGE_API_KEY: fake.apiKey, VONAGE_API_SECRET: fake.apiSecret, VONAGE_FROM: 'Pruuf', VONAGE_API_BASE: fake.url };
    expect(vonageChannelFromConfig(testConfig('redis', 'postgres://x/y'), log)).toBeUndefined();

    const unsigned = vonageChannelFromConfig(testConfig('redis', 'postgres://x/y', env), log)!;
    const a = msg(newPhone());
    await unsigned.send(a, seconds(5000));
    expect(fake.accepted.find((x) => x.clientRef === a.deliveryId)).toMatchObject({ from: 'Pruuf', callback: null, ttl: '1800000' });

    const signed = vonageChannelFromConfig(testConfig('redis', 'postgres://x/y', { ...env, VONAGE_SIGNATURE_SECRET: 's3cret', SMS_VALIDITY_SECONDS: '600' }), log)!;
    const b = msg(newPhone());
    await signed.send(b, seconds(5000));
    expect(fake.accepted.find((x) => x.clientRef === b.deliveryId)).toMatchObject({ callback: 'http://pruuf.test/webhooks/vonage/status', ttl: '600000' });
  });
});

describe('Vonage configuration', () => {
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig({ NODE_ENV: 'test', ...env });
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    return [];
  };

  it('accepts a key, a secret and a sender, and defaults the signature method to SHA-256 HMAC', () => {
    const config = loadConfig({ NODE_ENV: 'test', VONAGE_API_KEY: 'abc', VONAGE_API_SECRET: 'def', VONAGE_FROM: '+447700900123' });
    expect(config).toMatchObject({ VONAGE_FROM: '+447700900123', VONAGE_SIGNATURE_METHOD: 'sha256hmac' });
    expect(config.VONAGE_SIGNATURE_SECRET).toBeUndefined();
    expect(loadConfig({ NODE_ENV: 'test', VONAGE_SIGNATURE_METHOD: 'MD5HASH' }).VONAGE_SIGNATURE_METHOD).toBe('md5hash');
    expect(loadConfig({ NODE_ENV: 'test', VONAGE_SIGNATURE_METHOD: '' }).VONAGE_SIGNATURE_METHOD).toBe('sha256hmac');
  });

  it.each([
    [{ VONAGE_API_KEY: 'abc', VONAGE_FROM: 'Pruuf' }, /VONAGE_API_SECRET: VONAGE_API_KEY and VONAGE_API_SECRET go together/],
    [{ VONAGE_API_SECRET: 'def' }, /VONAGE_API_KEY: VONAGE_API_KEY and VONAGE_API_SECRET go together/],
    [{ VONAGE_API_KEY: 'abc', VONAGE_API_SECRET: 'def' }, /VONAGE_FROM: is required with VONAGE_API_KEY/],
    [{ VONAGE_FROM: '447700900123' }, /VONAGE_FROM: must be an E\.164 number .* \(got "447700900123"\)/],
    [{ VONAGE_FROM: 'PruufAlertsLtd' }, /VONAGE_FROM: must be an E\.164 number .*alphanumeric/],
    [{ VONAGE_SIGNATURE_METHOD: 'sha256hash' }, /VONAGE_SIGNATURE_METHOD: must be one of md5hash, md5hmac, sha1hmac, sha256hmac, sha512hmac/],
    [{ VONAGE_API_BASE: 'not a url' }, /VONAGE_API_BASE/],
  ])('refuses %p at start with a message naming the variable', (env, message) => {
    const found = problems(env);
    expect(found.join('\n')).toMatch(message);
  });

  it('never shows the secrets it refuses', () => {
    const found = problems({ VONAGE_API_SECRET: 'very-secret-value' });
    expect(found.join('\n')).not.toContain('very-secret-value');
  });
});

describe("Vonage's webhook signature", () => {
  const sdk = new Vonage({ apiKey: 'k', apiSecret: 's' });
  const sdkName = { md5hash: 'MD5HASH', md5hmac: 'MD5HMAC', sha1hmac: 'SHA1HMAC', sha256hmac: 'SHA256HMAC', sha512hmac: 'SHA512HMAC' } as const;
  const at = new Date('2026-11-24T09:00:00Z');
  const receipt = (method: (typeof VONAGE_SIGNATURE_METHODS)[number], extra: Record<string, string> = {}) =>
    signedReceipt({ messageId: '0B00000127FDBC63', to: '+447700900123', from: 'Pruuf', clientRef: randomUUID(), apiKey: 'k' }, 'delivered', 'secret-1', method, at, '0', extra);

  it.each(VONAGE_SIGNATURE_METHODS)('agrees with the SDK (%s): what the fake signs, both verify; other secrets and methods fail', (method) => {
    const params = receipt(method, { note: 'a&b=c' });
    expect(sdk.sms.verifySignature(params.sig!, params, 'secret-1', sdkName[method] as never)).toBe(true);
    expect(verifyVonageSignature(params, 'secret-1', method)).toBe(true);
    expect(verifyVonageSignature(params, 'secret-2', method)).toBe(false);
    const other = VONAGE_SIGNATURE_METHODS.find((m) => m !== method)!;
    expect(verifyVonageSignature(params, 'secret-1', other)).toBe(false);
    expect(verifyVonageSignature({ ...params, status: 'failed' }, 'secret-1', method)).toBe(false);
    expect(verifyVonageSignature({ ...params, sig: '' }, 'secret-1', method)).toBe(false);
    expect(verifyVonageSignature({ ...params, sig: params.sig!.slice(0, -2) }, 'secret-1', method)).toBe(false);
  });

  it.each([
    ['3', 'dead'], ['4', 'dead'], ['12', 'dead'], ['14', 'dead'], ['9', 'optedOut'],
    ['6', 'ourProblem'], ['11', 'ourProblem'], ['52', 'ourProblem'],
    ['2', 'none'], ['7', 'none'], ['1', 'none'], [null, 'none'],
  ] as const)('reads receipt err-code %p as %s', (code, kind) => {
    const m = receiptErrorMeaning(code);
    expect(m.deadAddress !== undefined).toBe(kind === 'dead');
    expect(m.optedOut === true).toBe(kind === 'optedOut');
    expect(m.ourProblem === true).toBe(kind === 'ourProblem');
    if (code !== null) expect(m.reason).toContain(`err-code ${code}`);
  });
});
