import { DateTime } from 'luxon';
import { fitSms, multiLine, nameSteps, oneLine, preferGsm, truncate } from './sms.js';
import { escapeHtml } from '../http/html.js';

// Every message Pruuf sends, in its three channel forms. Pure: times come in as arguments and are shown
// in the member's time zone, the clock the member's promise was made on.
export { smsSegments } from './sms.js';
export { escapeHtml };

export type Rendered = {
  /** Plain text, "Pruuf:" first, at most two segments. */
  sms: string;
  email: { subject: string; text: string; html: string };
  /** FCM data values must be strings. */
  push: { title: string; body: string; data: Record<string, string> };
};
export type Where = { lat: number; lng: number; accuracy_m?: number | null };

const NAME_MAX = 60; // graphemes; a name is user input and can be any length
const NOTE_MAX = 1000;

const cleanName = (raw: string, fallback: string): string => truncate(oneLine(raw), NAME_MAX) || fallback;

// luxon builds a fresh Intl formatter for each zone name it prints; there are few (zone, offset) pairs.
const zoneNames = new Map<string, [string, string]>();
/** clock "09:30 EST"; day "09:30 EST on Thu 15 Jan"; long "09:30 EST on Thursday 15 January 2026 (Eastern Standard Time)" */
// A burst of alerts shares a few deadlines: the same (instant, zone, style) is formatted once.
const formatted = new Map<string, string>();
const FORMATTED_MAX = 5000;
function fmt(at: Date, timeZone: string, style: 'clock' | 'day' | 'long'): string {
  const key = `${at.getTime()}|${timeZone}|${style}`;
  const hit = formatted.get(key);
  if (hit !== undefined) return hit;
  if (formatted.size >= FORMATTED_MAX) formatted.clear();
  const out = format(at, timeZone, style);
  formatted.set(key, out);
  return out;
}
function format(at: Date, timeZone: string, style: 'clock' | 'day' | 'long'): string {
  const z = DateTime.fromJSDate(at, { zone: timeZone });
  // en-US names zones by abbreviation ("EST"); a bad zone must not stop an alert
  const d = (z.isValid ? z : DateTime.fromJSDate(at, { zone: 'UTC' })).setLocale('en-US');
  const key = `${d.zoneName}|${d.offset}`;
  const [short, long] = zoneNames.get(key) ?? zoneNames.set(key, [d.toFormat('ZZZZ'), d.toFormat('ZZZZZ')]).get(key)!;
  const time = `${d.toFormat('HH:mm')} ${short}`;
  if (style === 'clock') return time;
  if (style === 'day') return `${time} on ${d.toFormat('ccc d LLL')}`;
  return `${time} on ${d.toFormat('cccc d LLLL yyyy')}${long === short ? '' : ` (${long})`}`;
}
const clock = (at: Date, tz: string): string => fmt(at, tz, 'clock');
const when = (at: Date, tz: string): string => fmt(at, tz, 'day');
const whenLong = (at: Date, tz: string): string => fmt(at, tz, 'long');

function duration(minutes: number): string {
  const m = Math.max(1, Math.round(minutes));
  if (m < 60) return `${m} min`;
  if (m < 1440) return m % 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m / 60} h`;
  const d = Math.floor(m / 1440);
  const h = Math.floor((m % 1440) / 60);
  return `${d} day${d > 1 ? 's' : ''}${h ? ` ${h} h` : ''}`;
}

export function mapLink(w: Where | null): string | null {
  if (!w || !Number.isFinite(w.lat) || !Number.isFinite(w.lng) || Math.abs(w.lat) > 90 || Math.abs(w.lng) > 180) return null;
  const f = (n: number) => String(Number(n.toFixed(5)) || 0); // ~1 m; "|| 0" turns -0 into 0
  return `https://maps.google.com/?q=${f(w.lat)},${f(w.lng)}`;
}

type Seg = string | { href: string; label?: string };
type Para = Seg[] | { quote: string } | { small: string };

const isWebUrl = (u: string): boolean => /^https?:\/\/[^\s"'<>]+$/i.test(u);

const P = 'margin:0 0 14px;font-size:16px;line-height:1.5';
function segHtml(s: Seg): string {
  if (typeof s === 'string') return escapeHtml(s);
  const label = escapeHtml(s.label ?? s.href);
  return isWebUrl(s.href) ? `<a href="${escapeHtml(s.href)}" style="color:#1d4ed8">${label}</a>` : label;
}
const segText = (s: Seg): string => (typeof s === 'string' ? s : s.label ? `${s.label} (${s.href})` : s.href);

function email(subject: string, paras: Para[], button: { href: string; label: string } | null): Rendered['email'] {
  const text: string[] = [];
  const html: string[] = [];
  paras.forEach((p, i) => {
    if (button && i === paras.length - 1) {
      // the button goes right before the footer line
      text.push(`${button.label}: ${button.href}`);
      const a = escapeHtml(button.href);
      if (isWebUrl(button.href)) {
        html.push(`<p style="margin:24px 0"><a href="${a}" style="display:inline-block;padding:14px 28px;border-radius:8px;background:#dc2626;color:#ffffff;font-size:18px;font-weight:bold;text-decoration:none">${escapeHtml(button.label)}</a></p>`);
        html.push(`<p style="margin:0 0 14px;font-size:13px;color:#71717a">If the button does not work, open this link: <a href="${a}" style="color:#1d4ed8;word-break:break-all">${a}</a></p>`);
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
    html: `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body style="margin:0;padding:16px;background:#f4f4f5;font-family:Arial,Helvetica,sans-serif;color:#18181b"><div style="max-width:560px;margin:0 auto;padding:24px;background:#ffffff;border-radius:8px">${html.join('')}</div></body></html>`,
  };
}

const hello = (contact: string): Seg[] => [contact ? `Hi ${contact},` : 'Hello,'];
const becauseContact = (member: string): Para => ({ small: `You get this because ${member} added you as an emergency contact on Pruuf.` });

export type AlertInput = {
  memberName: string; contactName: string; kind: 'missed' | 'sos';
  deadlineAt: Date | null; openedAt: Date; timeZone: string;
  lastCheckInAt: Date | null; lastLocation: Where | null; note: string | null;
  ackUrl: string; delayedByMinutes: number; round: number; incidentId: string;
};

const TODO = "Call them or go and check on them. If you are taking care of it, tap I'm on it so others know.";
const SMS_TODO = ["Call them or go and check on them. If you are taking care of it, tap I'm on it so others know: ", "Call or visit them. If you're on it, tap: ", "I'm on it: "];

type AlertSms = { name: string; note: string; map: boolean; last: boolean; due: 0 | 1 | 2; todo: 0 | 1 | 2; delay: 0 | 1 | 2; again: 0 | 1 | 2; terse: boolean; generic: boolean };

export function renderAlert(c: AlertInput): Rendered {
  const tz = c.timeZone;
  const member = cleanName(c.memberName, 'A Pruuf member');
  const contact = cleanName(c.contactName, '');
  const sos = c.kind === 'sos';
  const map = mapLink(c.lastLocation);
  const note = c.note ? truncate(multiLine(c.note), NOTE_MAX) : '';
  const late = c.delayedByMinutes > 0 ? duration(c.delayedByMinutes) : null;
  const again = c.round > 1;
  const what = sos ? `${member} pressed the SOS button and needs help` : `${member} missed a check-in`;
  const accuracy = c.lastLocation?.accuracy_m != null && c.lastLocation.accuracy_m > 0 ? ` (within ${Math.round(c.lastLocation.accuracy_m)} m)` : '';

  const dueAt = sos ? c.openedAt : c.deadlineAt;
  const dueText = dueAt ? ['', clock(dueAt, tz), when(dueAt, tz)] : ['', '', ''];
  const lastText = c.lastCheckInAt ? when(c.lastCheckInAt, tz) : '';
  const sms = fitSms(
    (o: AlertSms): string => {
      const who = o.generic ? 'Someone you are a contact for' : o.name;
      const parts = ['Pruuf:'];
      if (again && o.again) parts.push(o.again === 2 ? 'Reminder, still no answer:' : 'Reminder:');
      const due = dueText[o.due];
      if (sos) parts.push(`SOS! ${who} ${o.terse ? 'needs help' : 'pressed the SOS button and needs help'}${due ? ` (${due})` : ''}.`);
      else parts.push(`${who} missed a check-in${due ? ` due ${due}` : ''}.`);
      if (o.note) parts.push(`Note: "${o.note}"`);
      if (late && o.delay) parts.push(o.delay === 2 ? `This alert is ${late} late: Pruuf had a problem.` : `(${late} late, our fault)`);
      // no full stop right after a link: some phones would make it part of the link
      if (!sos && o.last && c.lastCheckInAt) parts.push(`Last check-in ${lastText}${o.map && map ? `, at ${map}` : '.'}`);
      else if (o.map && map) parts.push(`${sos ? 'Location' : 'Last location'}: ${map}`);
      parts.push(SMS_TODO[o.todo] + c.ackUrl);
      return parts.join(' ');
    },
    { name: member, note: oneLine(note), map: true, last: true, due: 2, todo: 0, delay: 2, again: 2, terse: false, generic: false },
    [
      { name: preferGsm(member) },
      { todo: 1 },
      { delay: 1, again: 1 },
      ...[120, 60, 30].map((n) => ({ note: truncate(oneLine(note), n) })),
      { note: '' },
      { todo: 2 },
      { last: false },
      { map: false },
      ...nameSteps('name', preferGsm(member), [24, 12]),
      { delay: 0, again: 0 },
      ...nameSteps('name', preferGsm(member), [6, 3, 1]),
      { due: 1 },
      { terse: true },
      { generic: true }, // only when even a one-letter name does not fit next to the link
      { due: 0 },
    ],
  );

  const timing = sos ? `They pressed it at ${whenLong(c.openedAt, tz)}.` : c.deadlineAt ? `It was due at ${whenLong(c.deadlineAt, tz)}.` : '';
  const lastPara: Seg[] = [];
  if (c.lastCheckInAt) lastPara.push(`Last check-in: ${whenLong(c.lastCheckInAt, tz)}.`);
  else if (!sos) lastPara.push('There is no earlier check-in on record.');
  const place = sos ? 'Location: ' : c.lastCheckInAt ? 'Location shared with it: ' : 'Last known location: ';
  if (map) lastPara.push(lastPara.length ? ' ' : '', place, { href: map, label: 'open the map' }, `${accuracy}.`);
  const delayLine = late ? `This alert is ${late} late because of a problem at Pruuf. We are sorry.` : null;
  const headline = `${again ? 'Reminder: ' : ''}${sos ? `SOS: ${member} needs help` : `${member} missed a check-in`}`;

  const paras: Para[] = [hello(contact)];
  if (delayLine) paras.push([delayLine]);
  if (again) paras.push(['Still no answer: nobody has said they are on it yet.']);
  paras.push([`${what}. ${timing}`.trim()]);
  if (note) paras.push([sos ? 'Their message:' : 'Their note:'], { quote: note });
  if (lastPara.length) paras.push(lastPara);
  paras.push([TODO], { small: `You get this because ${member} added you as an emergency contact on Pruuf. Reference: ${c.incidentId}.` });

  const pushBody = [
    late && `Sent ${late} late because of a Pruuf problem.`,
    again && 'Still no answer.',
    sos ? `${truncate(member, 40)} pressed the SOS button at ${clock(c.openedAt, tz)}.` : c.deadlineAt ? `It was due at ${when(c.deadlineAt, tz)}.` : '',
    "Call them or check on them, and tap I'm on it if you are taking care of it.",
  ].filter(Boolean).join(' ');

  return {
    sms,
    email: email(late ? `${headline} (sent ${late} late)` : headline, paras, { href: c.ackUrl, label: "I'm on it" }),
    push: {
      title: `${again ? 'Reminder: ' : ''}${sos ? `SOS: ${truncate(member, 40)} needs help` : `${truncate(member, 40)} missed a check-in`}`,
      body: pushBody,
      data: { type: 'alert', incident_id: c.incidentId, url: c.ackUrl },
    },
  };
}

export function renderReminder(c: { memberName: string; deadlineAt: Date; timeZone: string; checkInUrl: string; minutesLeft: number }): Rendered {
  const member = cleanName(c.memberName, '');
  const left = Math.round(c.minutesLeft);
  const due = left > 0 ? `at ${clock(c.deadlineAt, c.timeZone)} (in ${duration(left)})` : `now (${clock(c.deadlineAt, c.timeZone)})`;
  const sms = fitSms(
    (o: { name: string; hi: boolean; short: boolean; url: boolean }) =>
      `Pruuf: ${o.short ? 'Check-in' : o.hi && o.name ? `Hi ${o.name}, your check-in is` : 'Your check-in is'} due ${due}. Reply OK to check in${o.url ? `, or tap ${c.checkInUrl}` : '.'}`,
    { name: preferGsm(member), hi: true, short: false, url: true },
    [...nameSteps('name', preferGsm(member), [12, 6]), { hi: false }, { short: true }, { url: false }],
  );
  const paras: Para[] = [
    hello(member),
    [`Your check-in is due ${due}. Tap the button to tell us you are OK.`],
    ['If you do not check in, we will alert your emergency contacts.'],
    { small: 'You get this because you have a check-in schedule on Pruuf.' },
  ];
  return {
    sms,
    email: email(`Check in by ${clock(c.deadlineAt, c.timeZone)}`, paras, { href: c.checkInUrl, label: "I'm OK" }),
    push: {
      title: 'Time to check in',
      body: `Your check-in is due ${due}. Tap to let your contacts know you are OK.`,
      data: { type: 'reminder', url: c.checkInUrl },
    },
  };
}

export function renderAllClear(c: { memberName: string; contactName: string; resolvedAt: Date; timeZone: string; how: 'check_in' | 'member_resolved'; incidentId: string }): Rendered {
  const member = cleanName(c.memberName, 'A Pruuf member');
  const short = when(c.resolvedAt, c.timeZone);
  const says = (name: string, at = short) =>
    c.how === 'check_in' ? `${name} checked in at ${at}.` : `${name} said they are OK and closed the alert at ${at}.`;
  const sms = fitSms(
    (o: { name: string; thanks: boolean }) => `Pruuf: All clear. ${says(o.name)} No need to do anything more.${o.thanks ? ' Thank you.' : ''}`,
    { name: preferGsm(member), thanks: true },
    [{ thanks: false }, ...nameSteps('name', preferGsm(member), [24, 12, 6, 3, 1])],
  );
  const paras: Para[] = [
    hello(cleanName(c.contactName, '')),
    [`All clear: ${says(member, whenLong(c.resolvedAt, c.timeZone))}`],
    ['You do not need to do anything more. Thank you for being there.'],
    becauseContact(member),
  ];
  return {
    sms,
    email: email(`All clear: ${member} is OK`, paras, null),
    push: {
      title: `All clear: ${truncate(member, 40)} is OK`,
      body: `${says(truncate(member, 40))} No need to do anything more.`,
      data: { type: 'all_clear', incident_id: c.incidentId },
    },
  };
}

export function renderAckNotice(c: { memberName: string; contactName: string; ackedByName: string; ackedAt: Date; timeZone: string; incidentId: string }): Rendered {
  const member = cleanName(c.memberName, 'A Pruuf member');
  const acker = cleanName(c.ackedByName, 'Another contact');
  const at = clock(c.ackedAt, c.timeZone);
  const sms = fitSms(
    (o: { m: string; a: string }) => `Pruuf: ${o.a} is on it: since ${at} they are taking care of ${o.m}. No need to act now; we will tell you if that changes.`,
    { m: preferGsm(member), a: preferGsm(acker) },
    [...nameSteps('a', preferGsm(acker), [24]), ...nameSteps('m', preferGsm(member), [24]), ...nameSteps('a', preferGsm(acker), [12, 6, 3, 1]), ...nameSteps('m', preferGsm(member), [12, 6, 3, 1])],
  );
  const paras: Para[] = [
    hello(cleanName(c.contactName, '')),
    [`${acker} is on it: at ${whenLong(c.ackedAt, c.timeZone)} they said they are taking care of ${member}.`],
    ['You do not need to act now. We will tell you if that changes, and when all is clear.'],
    becauseContact(member),
  ];
  return {
    sms,
    email: email(`${acker} is on it for ${member}`, paras, null),
    push: {
      title: `${truncate(acker, 40)} is on it`,
      body: `Since ${at}, ${truncate(acker, 40)} is taking care of ${truncate(member, 40)}. We will tell you if that changes.`,
      data: { type: 'ack_notice', incident_id: c.incidentId },
    },
  };
}

export function renderCheckInNote(c: { memberName: string; contactName: string; at: Date; timeZone: string }): Rendered {
  const member = cleanName(c.memberName, 'A Pruuf member');
  const at = when(c.at, c.timeZone);
  const sms = fitSms(
    (o: { name: string }) => `Pruuf: ${o.name} checked in at ${at}. All is well.`,
    { name: preferGsm(member) },
    nameSteps('name', preferGsm(member), [24, 12, 6, 3, 1]),
  );
  const paras: Para[] = [
    hello(cleanName(c.contactName, '')),
    [`${member} checked in at ${whenLong(c.at, c.timeZone)}. All is well.`],
    { small: `You get this because ${member} asked Pruuf to tell you when they check in.` },
  ];
  return {
    sms,
    email: email(`${member} checked in at ${clock(c.at, c.timeZone)}`, paras, null),
    push: { title: `${truncate(member, 40)} checked in`, body: `${truncate(member, 40)} checked in at ${at}. All is well.`, data: { type: 'check_in_note' } },
  };
}
