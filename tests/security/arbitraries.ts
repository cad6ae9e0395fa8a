import fc from 'fast-check';

/**
 * Hostile inputs generated from a route's JSON schema (the served OpenAPI document): values that
 * almost fit, then break in one place, plus the classics (huge, deep, odd unicode, proto keys).
 */
export type JsonSchema = {
  type?: string | string[]; properties?: Record<string, JsonSchema>; required?: string[]; items?: JsonSchema;
  anyOf?: JsonSchema[]; oneOf?: JsonSchema[]; allOf?: JsonSchema[]; enum?: unknown[]; const?: unknown; format?: string;
  minimum?: number; maximum?: number; minLength?: number; maxLength?: number; minItems?: number; maxItems?: number; default?: unknown;
};

/** A body is raw text, so it can hold what JSON.stringify never writes (`__proto__` keys, 1e400, bad UTF-8). */
export type RawBody = { text: string | Buffer; note: string };

export const UNICODE_EDGES = [
  '\u0000', 'a\u0000b', '\uD800', '\uDFFF', '\uFEFF', '\u202Etxt.exe', '🙂👨‍👩‍👧', 'e\u0301', '\u200B', '\r\n', '%00', '%', '../../etc/passwd',
  "'; drop table members; --", '<script>alert(1)</script>', '${7*7}', '{{7*7}}', 'null', 'true', '-1', '1e309', 'ÿ', '\\', '"',
];
export const HUGE = ['x'.repeat(70_000), '🙂'.repeat(5_000), 'a'.repeat(1_001)];
const NUMBERS = ['1e400', '-1e400', '9007199254740993', '-0', '0.0000000001', '1e-400', '123456789012345678901234567890', '-2147483649', '2147483648'];

export const hostileString = fc.oneof(
  fc.constantFrom(...UNICODE_EDGES, ...HUGE),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ maxLength: 300 }),
);

/** A JSON literal (as text) of the wrong shape for most fields. */
export const hostileJson: fc.Arbitrary<string> = fc.oneof(
  hostileString.map((s) => JSON.stringify(s)),
  fc.constantFrom(...NUMBERS, 'null', 'true', 'false', '[]', '{}', '[null]', '{"__proto__":{"polluted":"yes"}}', '{"constructor":{"prototype":{"polluted":"yes"}}}'),
  fc.integer({ min: 1, max: 3000 }).map((d) => '['.repeat(d) + ']'.repeat(d)),
  fc.integer({ min: 1, max: 3000 }).map((d) => '{"a":'.repeat(d) + '1' + '}'.repeat(d)),
  fc.double().map((n) => (Number.isFinite(n) ? String(n) : '1e400')),
  fc.array(fc.constantFrom('1', '"x"', 'null'), { maxLength: 2000 }).map((a) => `[${a.join(',')}]`),
);

function pick(schema: JsonSchema): JsonSchema {
  return schema.oneOf?.[0] ?? schema.anyOf?.[0] ?? schema.allOf?.[0] ?? schema;
}

/** A value that satisfies the simple parts of the schema (enough to reach the code behind validation). */
export function validish(schemaIn: JsonSchema): fc.Arbitrary<unknown> {
  const variants = schemaIn.oneOf ?? schemaIn.anyOf;
  if (variants !== undefined) return fc.oneof(...variants.map(validish));
  const schema = pick(schemaIn);
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum !== undefined) return fc.constantFrom(...schema.enum);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case 'object': {
      const props = schema.properties ?? {};
      const required = new Set(schema.required ?? []);
      const rec = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, validish(v)]));
      return fc.record(rec, { requiredKeys: Object.keys(props).filter((k) => required.has(k)) });
    }
    case 'array':
      return fc.array(validish(schema.items ?? {}), { minLength: schema.minItems ?? 0, maxLength: Math.min(schema.maxItems ?? 4, 4) });
    case 'integer':
      return fc.integer({ min: Math.max(schema.minimum ?? -1000, -1e9), max: Math.min(schema.maximum ?? 1000, 1e9) });
    case 'number':
      return fc.double({ min: schema.minimum ?? -1000, max: schema.maximum ?? 1000, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'string':
      if (schema.format === 'uuid') return fc.uuid();
      // Now and then an instant at the edges: a year-9999 deadline once answered 500 after committing.
      if (schema.format === 'date-time') {
        return fc.oneof(
          { weight: 4, arbitrary: fc.date({ min: new Date('2020-01-01'), max: new Date('2030-01-01'), noInvalidDate: true }).map((d) => d.toISOString()) },
          { weight: 1, arbitrary: fc.constantFrom('9999-12-31T23:59:00Z', '2199-12-31T23:59:59Z', '2200-01-01T00:00:00Z', '0001-01-01T00:00:00Z') },
        );
      }
      if (schema.format === 'email') return fc.emailAddress();
      return fc.oneof(
        fc.string({ minLength: schema.minLength ?? 0, maxLength: Math.min(schema.maxLength ?? 40, 40) }),
        // US/Pacific-New: luxon knows it, PostgreSQL does not (it once broke /v1/watching).
        fc.constantFrom('09:30', 'Europe/London', 'US/Pacific-New', '+447700900123', 'ann@example.test', 'ios', 'plus'),
      );
    default:
      return fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.boolean(), fc.constant(null));
  }
}

const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', '__defineGetter__', 'hasOwnProperty', 'toString'];

/** A body for a route: valid-ish, then broken in one way (or several). */
export function hostileBody(schema: JsonSchema | undefined): fc.Arbitrary<RawBody> {
  const base = schema === undefined ? fc.constant<Record<string, unknown>>({}) : validish(schema);
  const props = Object.keys(pick(schema ?? {}).properties ?? {});
  const asObject = (v: unknown) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? { ...(v as Record<string, unknown>) } : {});
  const entries = (o: Record<string, unknown>) => Object.entries(o).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
  return fc.oneof(
    base.map((v) => ({ text: JSON.stringify(v) ?? 'null', note: 'valid-ish' })),
    fc.tuple(base, props.length > 0 ? fc.constantFrom(...props) : fc.constant('x')).map(([v, k]) => {
      const o = asObject(v);
      delete o[k];
      return { text: JSON.stringify(o), note: `without ${k}` };
    }),
    fc.tuple(base, props.length > 0 ? fc.constantFrom(...props) : fc.constant('x'), hostileJson).map(([v, k, bad]) => {
      const o = asObject(v);
      delete o[k];
      return { text: `{${[...entries(o), `${JSON.stringify(k)}:${bad}`].join(',')}}`, note: `${k} = ${bad.slice(0, 40)}` };
    }),
    fc.tuple(base, fc.oneof(fc.constantFrom(...PROTO_KEYS), fc.string({ maxLength: 20 })), hostileJson).map(([v, k, bad]) => ({
      text: `{${[...entries(asObject(v)), `${JSON.stringify(k)}:${bad}`].join(',')}}`, note: `extra ${k}`,
    })),
    hostileJson.map((text) => ({ text, note: 'whole body replaced' })),
    fc.constantFrom<RawBody>(
      { text: Buffer.from([0x7b, 0x22, 0x6e, 0x61, 0x6d, 0x65, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc3, 0x28, 0x22, 0x7d]), note: 'invalid UTF-8' },
      { text: Buffer.from([0xc0, 0xaf, 0xed, 0xa0, 0x80]), note: 'invalid UTF-8, not JSON' },
      { text: '{"a":1,', note: 'truncated JSON' },
      { text: '', note: 'empty' },
      { text: '{"a":1}{"b":2}', note: 'two documents' },
    ),
  );
}

/** A path parameter or query value: mostly hostile, sometimes the real thing. */
export function hostileParam(real: string | undefined): fc.Arbitrary<string> {
  return fc.oneof(
    ...(real === undefined ? [] : [fc.constant(real)]),
    hostileString,
    fc.uuid(),
    fc.constantFrom('0', '-1', '1e400', '00000000-0000-0000-0000-000000000000', 'AQEAAAAAAAAAAAAAAAAAAAAAAA', 'a'.repeat(2000), '%2e%2e%2f', '%ZZ', '%C0%AF'),
  );
}

/** A URL can only carry well-formed text; lone surrogates become U+FFFD as a browser would send them. */
function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** Percent-encoded; with `raw`, the generator's own `%` sequences (invalid escapes, overlong UTF-8) go through verbatim. */
export function encodeSegment(s: string, raw: boolean): string {
  const text = wellFormed(s);
  if (raw) return text.replace(/[^\x21-\x7e]|[/?#&=]/gu, (c) => encodeURIComponent(c));
  return encodeURIComponent(text);
}
