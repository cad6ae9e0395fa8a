import Stripe from 'stripe';
import type { Config } from '../config.js';
import { AppError, unavailable } from '../http/errors.js';

/**
 * The Stripe SDK, configured once: retries with backoff (the SDK adds idempotency keys to
 * retried POSTs), a bounded timeout, and STRIPE_API_BASE to reach stripe-mock or a local fake.
 * Without STRIPE_SECRET_KEY there is no client: checkout and portal answer 503, and webhooks
 * can still be verified (that needs only the webhook secret).
 */
export function createStripeClient(config: Pick<Config, 'STRIPE_SECRET_KEY' | 'STRIPE_API_BASE'>): Stripe | undefined {
  if (config.STRIPE_SECRET_KEY === undefined) return undefined;
  const base = config.STRIPE_API_BASE === undefined ? undefined : new URL(config.STRIPE_API_BASE);
  return new Stripe(config.STRIPE_SECRET_KEY, {
    maxNetworkRetries: 2,
    timeout: 10_000,
    telemetry: false,
    ...(base === undefined
      ? {}
      : {
          host: base.hostname,
          protocol: base.protocol === 'http:' ? 'http' : 'https',
          ...(base.port === '' ? {} : { port: Number(base.port) }),
        }),
  });
}

export const billingNotConfigured = (what = 'billing is not available on this server') =>
  new AppError(503, 'BILLING_NOT_CONFIGURED', what);

/**
 * Maps a failed Stripe call to what our caller should see. Outages and rate limits are
 * temporary (503 with Retry-After); Stripe refusing our own request (bad key, unknown price)
 * is our configuration, never the caller's input.
 */
export function stripeFailure(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof Stripe.errors.StripeIdempotencyError) {
    return new AppError(409, 'CONFLICT', 'another billing request for this account is in progress; retry');
  }
  if (
    err instanceof Stripe.errors.StripeAuthenticationError ||
    err instanceof Stripe.errors.StripePermissionError ||
    err instanceof Stripe.errors.StripeInvalidRequestError
  ) {
    return billingNotConfigured('billing is misconfigured on this server');
  }
  return unavailable('the payment provider is unavailable; retry shortly', 5);
}

export function isStripeError(err: unknown): err is InstanceType<typeof Stripe.errors.StripeError> {
  return err instanceof Stripe.errors.StripeError;
}

export function isResourceMissing(err: unknown): boolean {
  return isStripeError(err) && (err.code === 'resource_missing' || err.statusCode === 404);
}

export { Stripe };
