import { createRequire } from 'node:module';
import type { FastifyInstance } from 'fastify';

/**
 * Checks responses against the served OpenAPI document (JSON Schema 2020-12 inside OpenAPI 3.1).
 * ajv 8 comes with Fastify's own validator compiler; the top-level `ajv` package is eslint's ajv 6,
 * which cannot read 2020-12 schemas, so it is loaded from there rather than added as a dependency.
 */
type AjvLike = {
  addSchema: (schema: object, key: string) => void;
  getSchema: (ref: string) => (((data: unknown) => boolean) & { errors?: unknown[] | null }) | undefined;
};
const fromFastify = createRequire(createRequire(import.meta.url).resolve('@fastify/ajv-compiler'));
const Ajv2020 = (fromFastify('ajv/dist/2020') as { default: new (opts: object) => AjvLike }).default;
const addFormats = (fromFastify('ajv-formats') as { default: (ajv: AjvLike) => void }).default;

export type ResponseLike = { statusCode: number; headers: Record<string, unknown>; body: string };
export type OpenApiDoc = { paths: Record<string, Record<string, { responses?: Record<string, { content?: Record<string, { schema?: object }> }>; security?: object[] }>> };

/** `/v1/contacts/:id` (Fastify) → `/v1/contacts/{id}` (OpenAPI). */
export const openApiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
const pointer = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

export class OpenApiChecker {
  private readonly ajv: AjvLike;
  /** Error statuses a route answered that its schema does not declare: reported, body still checked as an envelope. */
  readonly undeclared = new Set<string>();
  checked = 0;

  constructor(readonly doc: OpenApiDoc) {
    this.ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: true });
    addFormats(this.ajv);
    this.ajv.addSchema(doc, 'openapi.json');
  }

  static async load(app: FastifyInstance): Promise<OpenApiChecker> {
    return new OpenApiChecker((await app.inject({ method: 'GET', url: '/openapi.json' })).json());
  }

  hasOperation(method: string, url: string): boolean {
    return this.doc.paths[openApiPath(url)]?.[method.toLowerCase()] !== undefined;
  }

  /** Problems with one response of `method url` (route template); empty when it conforms. */
  problems(method: string, url: string, res: ResponseLike): string[] {
    const path = openApiPath(url);
    const op = this.doc.paths[path]?.[method.toLowerCase()];
    if (op === undefined) return []; // hidden routes (docs, /openapi.json, /billing/return) are not in the document
    this.checked += 1;
    const type = String(res.headers['content-type'] ?? '');
    const status = String(res.statusCode);
    const declared = op.responses?.[status];
    const where = `${method} ${url} → ${status}`;
    if (declared === undefined) {
      if (res.statusCode < 400) return [`${where}: status not declared in the OpenAPI document`];
      this.undeclared.add(`${method} ${path} ${status}`);
      if (!type.includes('json')) return [];
      return this.validate(`#/components/schemas/ErrorEnvelope`, res.body, where);
    }
    if (!type.includes('json')) return [];
    const media = declared.content?.['application/json'] ?? Object.values(declared.content ?? {})[0];
    if (media?.schema === undefined) return [`${where}: JSON answered where the document declares no JSON schema`];
    const ref = `#/paths/${pointer(path)}/${method.toLowerCase()}/responses/${status}/content/${pointer(Object.keys(declared.content!).find((k) => declared.content![k] === media)!)}/schema`;
    return this.validate(ref, res.body, where);
  }

  private validate(ref: string, body: string, where: string): string[] {
    const validate = this.ajv.getSchema(`openapi.json${ref}`);
    if (validate === undefined) return [`${where}: no schema at ${ref}`];
    let data: unknown;
    try {
      data = body === '' ? null : JSON.parse(body);
    } catch {
      return [`${where}: body is not JSON: ${body.slice(0, 120)}`];
    }
    return validate(data) ? [] : [`${where}: ${JSON.stringify(validate.errors).slice(0, 400)}`];
  }
}
