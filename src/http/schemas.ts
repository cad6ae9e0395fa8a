import { z } from 'zod';

/** Shared wire-format pieces: snake_case JSON, ISO 8601 UTC timestamps, the error envelope. */
export const ErrorEnvelopeSchema = z
  .object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .meta({ id: 'ErrorEnvelope' });

export const Timestamp = z.iso.datetime().describe('ISO 8601 UTC');
export const Uuid = z.uuid();
export const IdParams = z.object({ id: z.uuid() });

/** Error responses every authenticated route can give. */
export const authErrors = {
  400: ErrorEnvelopeSchema,
  401: ErrorEnvelopeSchema,
  404: ErrorEnvelopeSchema,
  429: ErrorEnvelopeSchema,
} as const;

/**
 * Instants a client may give: from 1970 and before 2200 (the database refuses the same past 2200).
 * Outside that nothing of ours makes sense, and past year 9999 an instant cannot even be written
 * back in the four-digit-year ISO 8601 of the responses.
 */
export const INSTANT_MIN = Date.parse('1970-01-01T00:00:00Z');
export const INSTANT_MAX = Date.parse('2200-01-01T00:00:00Z');
export const Instant = z.iso
  .datetime({ offset: true })
  .refine((s) => {
    const t = Date.parse(s);
    return t >= INSTANT_MIN && t < INSTANT_MAX;
  }, 'must be from 1970-01-01 and before 2200-01-01T00:00:00Z')
  .describe('ISO 8601 with an offset (Z or ±hh:mm), from 1970 and before 2200');

// The ends of what four-digit-year ISO 8601 can carry.
const WIRE_MIN = Date.parse('0000-01-01T00:00:00.000Z');
const WIRE_MAX = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * An instant for a response. A row written around the API (before the database's rules, or with
 * them disabled) can hold one past year 9999 or ±infinity (which pg returns as a number), which
 * toISOString cannot write in the responses' format: it is clamped to the format's ends instead,
 * so one odd row cannot fail every read of the list that holds it.
 */
export const iso = (d: Date | number): string => {
  const t = typeof d === 'number' ? d : d.getTime();
  if (Number.isNaN(t)) throw new RangeError('iso: not a valid instant');
  return new Date(Math.min(WIRE_MAX, Math.max(WIRE_MIN, t))).toISOString();
};

/**
 * Checks a response against its schema where the route can still roll back: inside the
 * transaction that wrote it. Fastify checks it again on the way out, but only after the commit,
 * so a response that failed there would answer 500 and leave its write behind.
 */
export function checkedResponse<T extends z.ZodType>(schema: T, value: z.input<T>): z.input<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new Error(`response does not match its schema: ${r.error.message}`);
  return value;
}

/** A list in the API's shape: `{"data": […], "pagination": {"next_cursor", "has_more"}}`. */
export const listOf = <T extends z.ZodType>(item: T) =>
  z.object({ data: z.array(item), pagination: z.object({ next_cursor: z.string().nullable(), has_more: z.boolean() }) });
