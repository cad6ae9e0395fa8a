import { DateTime } from 'luxon';
import { escapeHtml } from '../http/html.js';
import type { Strings } from './locales/index.js';
import { oneLine, truncate } from './sms.js';

/** The pieces every message is made of: times in a zone and a language, durations, links, the email layout. */

// luxon builds a fresh Intl formatter for each zone name it prints; there are few (zone, offset, locale) triples.
const zoneNames = new Map<string, [string, string]>();
// A burst of alerts shares a few deadlines: the same (instant, zone, style, locale) is formatted once.
const formatted = new Map<string, string>();
const FORMATTED_MAX = 5000;

export type TimeStyle = 'clock' | 'day' | 'long';

/** clock "09:30 EST"; day "09:30 EST on Thu 15 Jan"; long "09:30 EST on Thursday 15 January 2026 (Eastern Standard Time)" */
export function fmt(at: Date, timeZone: string, style: TimeStyle, t: Strings): string {
  const key = `${at.getTime()}|${timeZone}|${style}|${t.intl}`;
  const hit = formatted.get(key);
  if (hit !== undefined) return hit;
  if (formatted.size >= FORMATTED_MAX) formatted.clear();
  const out = format(at, timeZone, style, t);
  formatted.set(key, out);
  return out;
}

function format(at: Date, timeZone: string, style: TimeStyle, t: Strings): string {
  const z = DateTime.fromJSDate(at, { zone: timeZone });
  // a bad zone must not stop a message: it is shown in UTC
  const d = (z.isValid ? z : DateTime.fromJSDate(at, { zone: 'UTC' })).setLocale(t.intl);
  const key = `${d.zoneName}|${d.offset}|${t.intl}`;
  const [short, long] = zoneNames.get(key) ?? zoneNames.set(key, [d.toFormat('ZZZZ').replace(/\u2212/g, '-'), d.toFormat('ZZZZZ').replace(/\u2212/g, '-')]).get(key)!;
  const time = `${d.toFormat('HH:mm')} ${short}`;
  if (style === 'clock') return time;
  if (style === 'day') return t.at(time, d.toFormat(t.dayPattern));
  return `${t.at(time, d.toFormat(t.longPattern))}${long === short ? '' : ` (${long})`}`;
}

export function duration(minutes: number, t: Strings): string {
  const m = Math.max(1, Math.round(minutes));
  if (m < 60) return t.minutes(m);
  if (m < 1440) return t.hours(Math.floor(m / 60), m % 60);
  return t.days(Math.floor(m / 1440), Math.floor((m % 1440) / 60));
}

export type Where = { lat: number; lng: number; accuracy_m?: number | null };

export function mapLink(w: Where | null): string | null {
  if (!w || !Number.isFinite(w.lat) || !Number.isFinite(w.lng) || Math.abs(w.lat) > 90 || Math.abs(w.lng) > 180) return null;
  const f = (n: number) => String(Number(n.toFixed(5)) || 0); // ~1 m; "|| 0" turns -0 into 0
  return `https://maps.google.com/?q=${f(w.lat)},${f(w.lng)}`;
}

/** An E.164 number as a tel: link, or null for anything else (a stored row may hold anything). */
export function telLink(phone: string | null | undefined): string | null {
  return typeof phone === 'string' && /^\+[1-9]\d{6,14}$/.test(phone) ? `tel:${phone}` : null;
}

export type Seg = string | { href: string; label?: string };
export type Para = Seg[] | { quote: string } | { small: string };

const isWebUrl = (u: string): boolean => /^https?:\/\/[^\s"'<>]+$/i.test(u);
const isSafeHref = (u: string): boolean => isWebUrl(u) || telLink(u.slice(4)) === u;

const P = 'margin:0 0 14px;font-size:16px;line-height:1.5';
function segHtml(s: Seg): string {
  if (typeof s === 'string') return escapeHtml(s);
  const label = escapeHtml(s.label ?? s.href);
  return isSafeHref(s.href) ? `<a href="${escapeHtml(s.href)}" style="color:#1d4ed8">${label}</a>` : label;
}
// A tel: link reads as its number in text; a web link with a label reads as "label (url)".
const segText = (s: Seg): string => (typeof s === 'string' ? s : s.href.startsWith('tel:') ? (s.label ?? s.href.slice(4)) : s.label ? `${s.label} (${s.href})` : s.href);

export type Email = { subject: string; text: string; html: string };

export function email(subject: string, paras: Para[], button: { href: string; label: string } | null, t: Strings): Email {
  const text: string[] = [];
  const html: string[] = [];
  paras.forEach((p, i) => {
    if (button && i === paras.length - 1) {
      // the button goes right before the footer line
      text.push(`${button.label}: ${button.href}`);
      const a = escapeHtml(button.href);
      if (isWebUrl(button.href)) {
        html.push(`<p style="margin:24px 0"><a href="${a}" style="display:inline-block;padding:14px 28px;border-radius:8px;background:#dc2626;color:#ffffff;font-size:18px;font-weight:bold;text-decoration:none">${escapeHtml(button.label)}</a></p>`);
        html.push(`<p style="margin:0 0 14px;font-size:13px;color:#71717a">${escapeHtml(t.buttonFallback)} <a href="${a}" style="color:#1d4ed8;word-break:break-all">${a}</a></p>`);
      } else html.push(`<p style="${P}">${escapeHtml(button.label)}: ${a}</p>`); // never an href we did not recognise
    }
    if (Array.isArray(p)) {
      text.push(p.map(segText).join(''));
      html.push(`<p style="${P}">${p.map(segHtml).join('')}</p>`);
    } else if ('quote' in p) {
      text.push(p.quote.split('\n').map((l) => `> ${l}`).join('\n'));
      html.push(`<blockquote style="${P};padding:8px 12px;border-left:4px solid #d4d4d8;background:#fafafa">${escapeHtml(p.quote).replace(/\n/g, '<br>')}</blockquote>`);
    } else {
      text.push(p.small);
      html.push(`<p style="margin:24px 0 0;font-size:13px;line-height:1.4;color:#71717a">${escapeHtml(p.small)}</p>`);
    }
  });
  const title = escapeHtml(oneLine(subject));
  return {
    subject: truncate(oneLine(subject), 150), // one line: a newline in a name must not reach a mail header
    text: text.join('\n\n'),
    html: `<!doctype html><html lang="${escapeHtml(t.intl.slice(0, 2))}"><head><meta charset="utf-8"><title>${title}</title></head><body style="margin:0;padding:16px;background:#f4f4f5;font-family:Arial,Helvetica,sans-serif;color:#18181b"><div style="max-width:560px;margin:0 auto;padding:24px;background:#ffffff;border-radius:8px">${html.join('')}</div></body></html>`,
  };
}
