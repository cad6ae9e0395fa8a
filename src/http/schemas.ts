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

export const iso = (d: Date): string => d.toISOString();

/** A list in the API's shape: `{"data": […], "pagination": {"next_cursor", "has_more"}}`. */
export const listOf = <T extends z.ZodType>(item: T) =>
  z.object({ data: z.array(item), pagination: z.object({ next_cursor: z.string().nullable(), has_more: z.boolean() }) });
