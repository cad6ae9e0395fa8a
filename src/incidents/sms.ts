/**
 * SMS length arithmetic and the text helpers messages need to stay inside it.
 * Pure: no I/O, no clock.
 */

// GSM 03.38 default alphabet (ESC 0x1B left out: it never appears in our input) and its extension
// table, whose characters are sent as ESC + char and so cost two septets.
const GSM_BASIC = new Set(
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà',
);
const GSM_EXTENDED = new Set('^{}\\[~]|€\f');

/** Max segments an SMS may take. Carriers bill each; long concatenations arrive late or out of order. */
export const MAX_SMS_SEGMENTS = 2;

/** Septets per character, or null when the text needs UCS-2. */
function gsmSeptets(text: string): number[] | null {
  const out: number[] = [];
  for (const ch of text) {
    if (GSM_BASIC.has(ch)) out.push(1);
    else if (GSM_EXTENDED.has(ch)) out.push(2);
    else return null;
  }
  return out;
}

export function isGsm(text: string): boolean {
  return gsmSeptets(text) !== null;
}

/**
 * Packs units into segments the way handsets do: an escape pair (GSM) or a surrogate pair (UCS-2) is
 * never split across two segments, so a concatenated message can need one more segment than a plain
 * division says.
 */
function pack(units: number[], single: number, multi: number): number {
  const total = units.reduce((a, b) => a + b, 0);
  if (total <= single) return 1;
  let segments = 1;
  let used = 0;
  for (const u of units) {
    if (used + u > multi) {
      segments++;
      used = 0;
    }
    used += u;
  }
  return segments;
}

/** Segments this text takes: GSM-7 160 / 153 per part, otherwise UCS-2 70 / 67 UTF-16 units per part. */
export function smsSegments(text: string): number {
  const septets = gsmSeptets(text);
  if (septets) return pack(septets, 160, 153);
  return pack([...text].map((cp) => cp.length), 70, 67);
}

const segmenter = new Intl.Segmenter('en', { granularity: 'grapheme' });

/** Printable ASCII: every character is its own grapheme, no segmenter needed (the common case, and a hot one). */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

export function graphemes(text: string): string[] {
  if (PRINTABLE_ASCII.test(text)) return text.split('');
  return Array.from(segmenter.segment(text), (s) => s.segment);
}

/** At most `max` user-perceived characters (an emoji family or a flag is one), "…" when cut. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text; // a grapheme is at least one UTF-16 unit
  const keep = Math.max(1, max);
  if (PRINTABLE_ASCII.test(text)) return text.length <= keep ? text : `${text.slice(0, keep).trimEnd()}…`;
  let n = 0;
  for (const { index } of segmenter.segment(text)) {
    if (n++ === keep) return `${text.slice(0, index).trimEnd()}…`; // stops early: notes can be long
  }
  return text;
}

// Bidi overrides can make a name display as something else; control characters break layouts and headers.
const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

/** User text on one line: no control or bidi characters, whitespace collapsed. */
export function oneLine(text: string): string {
  return text.replace(BIDI, '').replace(/[\p{Cc}\u2028\u2029\s]+/gu, ' ').trim();
}

/** User text that may keep its line breaks (notes in email). */
export function multiLine(text: string): string {
  return text
    .replace(BIDI, '')
    .replace(/\r\n?/g, '\n')
    .split('\n')
    .map((l) => l.replace(/[\p{Cc}\s]+/gu, ' ').trim())
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

// Typography that has a GSM look-alike. Swapped only when that makes the whole message GSM:
// one "’" in a name would otherwise halve the room (UCS-2) for everything else.
const LOOKALIKES: Record<string, string> = {
  '…': '...', '‘': "'", '’': "'", '‚': ',', '“': '"', '”': '"', '„': '"', '–': '-', '—': '-', '\u00a0': ' ', '«': '"', '»': '"', '−': '-', '\u202f': ' ',
};
// Latin letters with no Unicode decomposition to a base letter.
const LETTERS: Record<string, string> = {
  Ł: 'L', ł: 'l', Đ: 'D', đ: 'd', Œ: 'OE', œ: 'oe', Þ: 'Th', þ: 'th', ı: 'i', Ħ: 'H', ħ: 'h', ŋ: 'n', Ŋ: 'N',
};

export function gsmFriendly(text: string): string {
  let out = '';
  for (const ch of text) {
    if (GSM_BASIC.has(ch) || GSM_EXTENDED.has(ch)) out += ch;
    else if (LOOKALIKES[ch] !== undefined) out += LOOKALIKES[ch];
    else return text; // UCS-2 anyway: keep the real characters, "…" is shorter than "..."
  }
  return out;
}

/** The part of a name that GSM-7 can carry: "Zoë Łukasz 🌻" → "Zoe Lukasz"; "王小明" → "". */
export function gsmTransliterate(text: string): string {
  let out = '';
  for (const ch of text) {
    if (GSM_BASIC.has(ch) && ch !== '\n' && ch !== '\r') out += ch;
    else if (LOOKALIKES[ch] ?? LETTERS[ch]) out += LOOKALIKES[ch] ?? LETTERS[ch];
    else out += Array.from(ch.normalize('NFKD').replace(/\p{M}/gu, '')).filter((c) => GSM_BASIC.has(c)).join('');
  }
  return oneLine(out);
}

/**
 * The GSM form of a name when it keeps most of it ("Zoë" → "Zoe", "Ann 🌻" → "Ann"), else the name:
 * a GSM message has room for more than twice the text of a UCS-2 one.
 */
export function preferGsm(name: string): string {
  const latin = gsmTransliterate(name);
  const letters = (s: string) => graphemes(s).filter((g) => g.trim() !== '').length;
  return latin && letters(latin) >= 0.6 * letters(name) ? latin : name;
}

/**
 * Tries ever shorter versions of a message until one fits in MAX_SMS_SEGMENTS.
 * `steps` are cumulative: each one changes a few options on top of all the previous ones, so they
 * list what to give up, in order. Returns the last version when nothing fits (only possible when
 * the one part that must stay, a link, is itself too long).
 */
export function fitSms<O extends object>(build: (o: O) => string, start: O, steps: Partial<O>[], opts: { fold?: boolean } = {}): string {
  // fold: a language whose spelling leaves GSM-7 (Spanish á, French ê) may drop those accents when,
  // and only when, the text would not fit otherwise; letters with no GSM base stay as they are.
  const fits = (text: string): string | null => {
    if (smsSegments(text) <= MAX_SMS_SEGMENTS) return text;
    if (opts.fold !== true) return null;
    const folded = foldAccents(text);
    return smsSegments(folded) <= MAX_SMS_SEGMENTS ? folded : null;
  };
  let o = { ...start };
  let text = gsmFriendly(build(o));
  const first = fits(text);
  if (first !== null) return first;
  for (const step of steps) {
    o = { ...o, ...step };
    text = gsmFriendly(build(o));
    const fit = fits(text);
    if (fit !== null) return fit;
  }
  return opts.fold === true ? foldAccents(text) : text;
}

/** "Llámale, está" → "Llamale, esta": each letter outside GSM-7 whose base letter is in it; the rest kept. */
export function foldAccents(text: string): string {
  let out = '';
  for (const ch of text) {
    if (GSM_BASIC.has(ch) || GSM_EXTENDED.has(ch)) out += ch;
    else if (LOOKALIKES[ch] !== undefined) out += LOOKALIKES[ch];
    else {
      const base = ch.normalize('NFKD').replace(/\p{M}/gu, '');
      out += base !== '' && [...base].every((c) => GSM_BASIC.has(c)) ? base : ch;
    }
  }
  return out;
}

/**
 * Steps that shorten a name to each of `caps` characters in turn, each time trying the name itself and
 * then its GSM form (when it has one: that keeps the message in 160/153-character parts).
 */
export function nameSteps<K extends string>(key: K, name: string, caps: number[]): Partial<Record<K, string>>[] {
  const latin = gsmTransliterate(name);
  const steps: string[] = [];
  for (const cap of caps) {
    steps.push(truncate(name, cap));
    if (latin && latin !== name) steps.push(truncate(latin, cap));
  }
  return steps.map((v) => ({ [key]: v }) as Partial<Record<K, string>>);
}
