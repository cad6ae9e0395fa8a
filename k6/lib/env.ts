/** A non-negative number option from `-e NAME=value`, else the default. */
export const num = (name: string, def: number): number => {
  const v = __ENV[name];
  const n = v === undefined || v === '' ? def : Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number`);
  return n;
};
