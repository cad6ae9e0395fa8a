import { pino, type Logger, type LoggerOptions } from 'pino';

/** Signed tokens travel in the path of contact links; never let them reach a log line. */
const TOKEN_IN_PATH = /\/(a|c|i)\/[^/?#]+/g;

export function redactUrl(url: string): string {
  return url.replace(TOKEN_IN_PATH, '/$1/[redacted]').replace(/([?&](token|key|signature)=)[^&]*/gi, '$1[redacted]');
}

/** Show enough of a phone number or email to debug, never all of it. */
export function maskAddress(value: string): string {
  if (value.includes('@')) {
    const [user = '', domain = ''] = value.split('@');
    return `${user.slice(0, 1)}***@${domain}`;
  }
  return value.length <= 4 ? '***' : `${value.slice(0, 3)}***${value.slice(-2)}`;
}

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'req.headers["x-twilio-signature"]',
        'req.headers["stripe-signature"]',
        'headers.authorization',
        '*.token',
        '*.password',
        '*.phone',
        '*.body',
      ],
      censor: '[redacted]',
    },
    serializers: {
      req(req: { method?: string; url?: string; id?: string; ip?: string }) {
        return { method: req.method, url: req.url === undefined ? undefined : redactUrl(req.url), id: req.id };
      },
      res(res: { statusCode?: number }) {
        return { statusCode: res.statusCode };
      },
    },
  };
}

export function createLogger(level: string, name?: string): Logger {
  return pino({ ...loggerOptions(level), ...(name === undefined ? {} : { name }) });
}

export type { Logger };
