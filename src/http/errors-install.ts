import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { isDatabaseUnavailable } from '../db/pool.js';
import { AppError, envelope } from './errors.js';

const STATUS_CODES: Record<number, string> = {
  400: 'VALIDATION_ERROR',
  401: 'UNAUTHENTICATED',
  402: 'PLAN_LIMIT',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  406: 'NOT_ACCEPTABLE',
  408: 'REQUEST_TIMEOUT',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
  431: 'HEADERS_TOO_LARGE',
};

const FASTIFY_MESSAGES: Record<string, string> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'request body is not valid JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'request body is empty but content-type is application/json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'request body is too large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported content-type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'content-length does not match the body',
};

/**
 * PostgreSQL data exceptions a value from a request can cause when it slips past its schema
 * (a float too small for `real`, a string with a NUL): the request is at fault, never a 5xx.
 */
const INPUT_DATA_ERRORS = new Set(['22001', '22003', '22007', '22008', '22021', '22P02', '22P05']);
function isInputDataError(err: unknown): boolean {
  const e = err as { code?: unknown; severity?: unknown };
  return typeof e.code === 'string' && typeof e.severity === 'string' && INPUT_DATA_ERRORS.has(e.code);
}

type Issue = { path?: (string | number)[]; instancePath?: string; message?: string; code?: string };

function issuesFrom(err: FastifyError): { path: string; message: string }[] {
  const list = (err.validation ?? []) as unknown as Issue[];
  return list.map((i) => {
    const params = (i as { params?: { issue?: Issue } }).params?.issue;
    const p = params?.path ?? i.path;
    const where = p !== undefined ? p.join('.') : (i.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
    return { path: `${err.validationContext ?? 'body'}${where === '' ? '' : `.${where}`}`, message: params?.message ?? i.message ?? 'invalid' };
  });
}

/** Every error leaves as the envelope of API.md; 5xx never carry details. */
export function installErrorHandlers(app: FastifyInstance): void {
  // Scanning for routes counts against the per-IP limit like any other request.
  app.setNotFoundHandler({ preHandler: app.rateLimit() }, (req, reply) => {
    void reply.code(404).send(envelope('NOT_FOUND', `no route for ${req.method} ${req.routeOptions.url ?? 'this path'}`));
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err instanceof AppError) {
      if (err.headers !== undefined) void reply.headers(err.headers);
      return reply.code(err.statusCode).send(envelope(err.code, err.message, err.details));
    }
    if (hasZodFastifySchemaValidationErrors(err) || err.validation !== undefined) {
      const issues = issuesFrom(err);
      const first = issues[0];
      const message = first === undefined ? 'request is invalid' : `${first.path}: ${first.message}`;
      return reply.code(400).send(envelope('VALIDATION_ERROR', message, { issues }));
    }
    if (isResponseSerializationError(err)) {
      req.log.error({ err: { message: err.message, issues: err.cause.issues } }, 'response did not match its schema');
      return reply.code(500).send(envelope('INTERNAL', 'internal error'));
    }
    if (isDatabaseUnavailable(err)) {
      req.log.warn({ err: { message: err.message, code: err.code } }, 'database unavailable');
      void reply.header('retry-after', '5');
      return reply.code(503).send(envelope('SERVICE_UNAVAILABLE', 'temporarily unavailable, retry shortly'));
    }
    if (isInputDataError(err)) {
      req.log.warn({ err: { code: err.code, message: err.message } }, 'database refused a value from the request');
      return reply.code(400).send(envelope('VALIDATION_ERROR', 'a value in the request is out of range or cannot be stored'));
    }
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      const code = STATUS_CODES[status] ?? 'BAD_REQUEST';
      const message = (err.code !== undefined ? FASTIFY_MESSAGES[err.code] : undefined) ?? err.message ?? 'bad request';
      return reply.code(status).send(envelope(code, message));
    }
    req.log.error({ err }, 'unhandled error');
    return reply.code(500).send(envelope('INTERNAL', 'internal error'));
  });
}

/**
 * Errors Node's HTTP parser answers before Fastify sees a request (headers over the size limit,
 * a request that timed out, bytes that are not HTTP): still the envelope of API.md. Replaces
 * Fastify's default, whose bodies are not.
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, text, body] = err.code === 'HPE_HEADER_OVERFLOW'
    ? [431, 'Request Header Fields Too Large', envelope('HEADERS_TOO_LARGE', 'the request headers are larger than this server accepts (16 KB)')]
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'Request Timeout', envelope('REQUEST_TIMEOUT', 'the request took too long to arrive')]
      : [400, 'Bad Request', envelope('VALIDATION_ERROR', 'the request is not valid HTTP')];
  const json = JSON.stringify(body);
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${text}\r\nContent-Length: ${Buffer.byteLength(json)}\r\nContent-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${json}`);
  }
  socket.destroy(err);
}
