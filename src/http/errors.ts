/** Domain errors the features throw; the one error handler maps them to the API envelope. */
export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

export const notFound = (what = 'resource') => new AppError(404, 'NOT_FOUND', `${what} not found`);
export const unauthenticated = (message = 'a valid bearer token is required') => new AppError(401, 'UNAUTHENTICATED', message);
export const forbidden = (message = 'not allowed') => new AppError(403, 'FORBIDDEN', message);
export const conflict = (message: string, details?: Record<string, unknown>) => new AppError(409, 'CONFLICT', message, details);
export const validation = (message: string, details?: Record<string, unknown>) => new AppError(400, 'VALIDATION_ERROR', message, details);
/**
 * The member has no display name, and what they ask for would send alerts that name them: an alert
 * from "a Pruuf member" is a message a contact cannot act on. The app sets one with PATCH /v1/me.
 */
export const displayNameRequired = (message: string, status: 400 | 409 = 400, details: Record<string, unknown> = {}) =>
  new AppError(status, 'DISPLAY_NAME_REQUIRED', message, { field: 'display_name', ...details });
export const planLimit = (message: string, details?: Record<string, unknown>) => new AppError(402, 'PLAN_LIMIT', message, details);
export const unavailable = (message: string, retryAfterSeconds = 5) =>
  new AppError(503, 'SERVICE_UNAVAILABLE', message, undefined, { 'retry-after': String(retryAfterSeconds) });

export type ErrorEnvelope = { error: { code: string; message: string; details?: Record<string, unknown> } };

export function envelope(code: string, message: string, details?: Record<string, unknown>): ErrorEnvelope {
  return { error: details === undefined ? { code, message } : { code, message, details } };
}
