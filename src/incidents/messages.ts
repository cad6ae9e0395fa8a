import { fitSms, multiLine, nameSteps, oneLine, preferGsm, truncate } from './sms.js';
import { escapeHtml } from '../http/html.js';
import { strings, type Locale, type Strings } from './locales/index.js';
import { duration, email, fmt, mapLink, telLink, type Email, type Para, type Seg, type Where } from './message-format.js';

// Every message Pruuf sends, in its three channel forms, in the reader's language (one template set
// per locale: ./locales). Pure: times come in as arguments and are shown in the member's time zone,
// the clock the member's promise was made on.
export { smsSegments } from './sms.js';
export { escapeHtml, mapLink, type Where };
export type { Locale };

export type Rendered = {
  /** Plain text, "Pruuf:" first, at most two segments. */
  sms: string;
  email: Email;
  /** FCM data values must be strings. */
  push: { title: string; body: string; data: Record<string, string> };
};

const NAME_MAX = 60; // graphemes; a name is user input and can be any length
const NOTE_MAX = 1000;

const cleanName = (raw: string, fallback: string): string => truncate(oneLine(raw), NAME_MAX) || fallback;
const clock = (at: Date, tz: string, t: Strings): string => fmt(at, tz, 'clock', t);
const when = (at: Date, tz: string, t: Strings): string => fmt(at, tz, 'day', t);
const whenLong = (at: Date, tz: string, t: Strings): string => fmt(at, tz, 'long', t);
const fold = (locale: Locale | undefined): { fold: boolean } => ({ fold: (locale ?? 'en') !== 'en' });

/** "Call Ann: +1 555…" as a paragraph with a tel: link, or nothing when the phone is not a number. */
function callPara(t: Strings, member: string, phone: string | null | undefined): Para[] {
  const tel = telLink(phone);
  return tel === null ? [] : [[t.alert.callLabel(member), { href: tel, label: phone! }]];
}

export type AlertInput = {
  memberName: string; contactName: string; kind: 'missed' | 'sos';
  deadlineAt: Date | null; openedAt: Date; timeZone: string;
  lastCheckInAt: Date | null; lastLocation: Where | null; note: string | null;
  ackUrl: string; delayedByMinutes: number; round: number; incidentId: string;
  /** The member's phone (E.164): every alert says how to reach them. */
  memberPhone?: string | null;
  /** Someone said "I'm on it" earlier and it lapsed: later alerts say so instead of "nobody has". */
  ackLapsed?: { by: string; at: Date } | null;
  /** Someone is on it right now (the alert was queued before they said so): it says who, not "nobody has". */
  ackActive?: { by: string; at: Date } | null;
  locale?: Locale;
  /** A copy sent again through another provider (no receipt came for the first): it says so. */
  repeat?: boolean;
};

type AlertSms = { name: string; note: string; map: boolean; last: boolean; due: 0 | 1 | 2; todo: 0 | 1 | 2; delay: 0 | 1 | 2; again: 0 | 1 | 2; call: boolean; terse: boolean; generic: boolean };

export function renderAlert(c: AlertInput): Rendered {
  const t = strings(c.locale);
  const a = t.alert;
  const tz = c.timeZone;
  const member = cleanName(c.memberName, t.aMember);
  const contact = cleanName(c.contactName, '');
  const sos = c.kind === 'sos';
  const map = mapLink(c.lastLocation);
  const phone = telLink(c.memberPhone) === null ? null : c.memberPhone!;
  const note = c.note ? truncate(multiLine(c.note), NOTE_MAX) : '';
  const late = c.delayedByMinutes > 0 ? duration(c.delayedByMinutes, t) : null;
  const again = c.round > 1;
  const lapsed = c.ackLapsed ? { by: cleanName(c.ackLapsed.by, t.anotherContact), at: c.ackLapsed.at } : null;
  const active = c.ackActive ? { by: cleanName(c.ackActive.by, t.anotherContact), at: c.ackActive.at } : null;
  const accuracy = c.lastLocation?.accuracy_m != null && c.lastLocation.accuracy_m > 0 ? a.within(Math.round(c.lastLocation.accuracy_m)) : '';

  const dueAt = sos ? c.openedAt : c.deadlineAt;
  const dueText = dueAt ? ['', clock(dueAt, tz, t), when(dueAt, tz, t)] : ['', '', ''];
  const lastText = c.lastCheckInAt ? when(c.lastCheckInAt, tz, t) : '';
  const sms = fitSms(
    (o: AlertSms): string => {
      const who = o.generic ? a.someone : o.name;
      const parts = [c.repeat === true ? t.repeat.smsTag : 'Pruuf:'];
      if (active) parts.push(a.smsAckActive(preferGsm(active.by)));
      else if (again && o.again) parts.push(lapsed && o.again === 2 ? a.smsAckLapsed(preferGsm(lapsed.by)) : a.againSms[o.again - 1]!);
      const due = dueText[o.due]!;
      parts.push(sos ? a.smsSos(who, o.terse, due) : a.smsMissed(who, due));
      if (o.note) parts.push(a.smsNote(o.note));
      if (late && o.delay) parts.push(a.smsLate(late, o.delay === 2));
      // no full stop right after a link: some phones would make it part of the link
      if (!sos && o.last && c.lastCheckInAt) parts.push(a.smsLast(lastText, o.map ? map : null));
      else if (o.map && map) parts.push(a.smsLocation(sos, map));
      if (o.call && phone) parts.push(a.smsCall(phone));
      parts.push(a.smsTodo[o.todo] + c.ackUrl);
      return parts.join(' ');
    },
    { name: member, note: oneLine(note), map: true, last: true, due: 2, todo: 0, delay: 2, again: 2, call: true, terse: false, generic: false },
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
      { call: false }, // a name of a few letters with the number beats a single letter with it
      ...nameSteps('name', preferGsm(member), [6, 3, 1]),
      { due: 1 },
      { terse: true },
      { generic: true }, // only when even a one-letter name does not fit next to the link
      { due: 0 },
    ],
    fold(c.locale),
  );

  const timing = sos ? a.pressedAt(whenLong(c.openedAt, tz, t)) : c.deadlineAt ? a.dueAt(whenLong(c.deadlineAt, tz, t)) : '';
  const lastPara: Seg[] = [];
  if (c.lastCheckInAt) lastPara.push(a.lastCheckIn(whenLong(c.lastCheckInAt, tz, t)));
  else if (!sos) lastPara.push(a.noEarlier);
  if (map) lastPara.push(lastPara.length ? ' ' : '', a.place(sos, c.lastCheckInAt !== null), { href: map, label: a.openMap }, `${accuracy}.`);
  const headline = `${again ? a.reminderPrefix : ''}${a.headline(member, sos)}`;

  const paras: Para[] = [[t.hello(contact)]];
  if (c.repeat === true) paras.push([t.repeat.line]);
  if (late) paras.push([a.lateLine(late)]);
  if (active) paras.push([a.ackActive(active.by, whenLong(active.at, tz, t), member)]);
  else if (lapsed) paras.push([a.ackLapsed(lapsed.by, whenLong(lapsed.at, tz, t), member)]);
  else if (again) paras.push([a.stillNoAnswer]);
  paras.push([`${a.what(member, sos)}. ${timing}`.trim()]);
  if (note) paras.push([a.noteLabel(sos)], { quote: note });
  if (lastPara.length) paras.push(lastPara);
  paras.push(...callPara(t, member, phone));
  paras.push([a.todo], { small: a.footer(member, c.incidentId) });

  const short = truncate(member, 40);
  const pushBody = [
    late && a.pushLate(late),
    active ? a.pushAckActive(truncate(active.by, 40)) : lapsed ? a.pushAckLapsed(truncate(lapsed.by, 40)) : again && a.pushStill,
    sos ? a.pushSos(short, clock(c.openedAt, tz, t)) : c.deadlineAt ? a.pushDue(when(c.deadlineAt, tz, t)) : '',
    phone && a.pushCall(phone),
    a.pushTodo,
  ].filter(Boolean).join(' ');

  return {
    sms,
    email: email(`${c.repeat === true ? t.repeat.subjectTag : ''}${late ? `${headline}${a.sentLate(late)}` : headline}`, paras, { href: c.ackUrl, label: a.button }, t),
    push: {
      title: `${c.repeat === true ? t.repeat.subjectTag : ''}${again ? a.reminderPrefix : ''}${a.pushTitle(short, sos)}`,
      body: pushBody,
      data: { type: 'alert', incident_id: c.incidentId, url: c.ackUrl, ...(phone ? { phone } : {}) },
    },
  };
}

// Reminders go to the member, who has no language setting yet: English.
const EN = strings('en');

export function renderReminder(c: { memberName: string; deadlineAt: Date; timeZone: string; checkInUrl: string; minutesLeft: number }): Rendered {
  const member = cleanName(c.memberName, '');
  const left = Math.round(c.minutesLeft);
  const at = clock(c.deadlineAt, c.timeZone, EN);
  const due = left > 0 ? `at ${at} (in ${duration(left, EN)})` : `now (${at})`;
  const sms = fitSms(
    (o: { name: string; hi: boolean; short: boolean; url: boolean }) =>
      `Pruuf: ${o.short ? 'Check-in' : o.hi && o.name ? `Hi ${o.name}, your check-in is` : 'Your check-in is'} due ${due}. Reply OK to check in${o.url ? `, or tap ${c.checkInUrl}` : '.'}`,
    { name: preferGsm(member), hi: true, short: false, url: true },
    [...nameSteps('name', preferGsm(member), [12, 6]), { hi: false }, { short: true }, { url: false }],
  );
  const paras: Para[] = [
    [EN.hello(member)],
    [`Your check-in is due ${due}. Tap the button to tell us you are OK.`],
    ['If you do not check in, we will alert your emergency contacts.'],
    { small: 'You get this because you have a check-in schedule on Pruuf.' },
  ];
  return {
    sms,
    email: email(`Check in by ${at}`, paras, { href: c.checkInUrl, label: "I'm OK" }, EN),
    push: {
      title: 'Time to check in',
      body: `Your check-in is due ${due}. Tap to let your contacts know you are OK.`,
      data: { type: 'reminder', url: c.checkInUrl },
    },
  };
}

export function renderAllClear(c: { memberName: string; contactName: string; resolvedAt: Date; timeZone: string; how: 'check_in' | 'member_resolved'; incidentId: string; locale?: Locale }): Rendered {
  const t = strings(c.locale);
  const member = cleanName(c.memberName, t.aMember);
  const says = (name: string, at: string) => t.allClear.says(name, at, c.how);
  const short = when(c.resolvedAt, c.timeZone, t);
  const sms = fitSms(
    (o: { name: string; thanks: boolean }) => t.allClear.sms(says(o.name, short), o.thanks),
    { name: preferGsm(member), thanks: true },
    [{ thanks: false }, ...nameSteps('name', preferGsm(member), [24, 12, 6, 3, 1])],
    fold(c.locale),
  );
  const paras: Para[] = [
    [t.hello(cleanName(c.contactName, ''))],
    [t.allClear.line(says(member, whenLong(c.resolvedAt, c.timeZone, t)))],
    [t.allClear.nothingMore],
    { small: t.becauseContact(member) },
  ];
  return {
    sms,
    email: email(t.allClear.subject(member), paras, null, t),
    push: {
      title: t.allClear.subject(truncate(member, 40)),
      body: t.allClear.pushBody(says(truncate(member, 40), short)),
      data: { type: 'all_clear', incident_id: c.incidentId },
    },
  };
}

export function renderAckNotice(c: { memberName: string; contactName: string; ackedByName: string; ackedAt: Date; timeZone: string; incidentId: string; locale?: Locale }): Rendered {
  const t = strings(c.locale);
  const member = cleanName(c.memberName, t.aMember);
  const acker = cleanName(c.ackedByName, t.anotherContact);
  const at = clock(c.ackedAt, c.timeZone, t);
  const sms = fitSms(
    (o: { m: string; a: string }) => t.ackNotice.sms(o.a, o.m, at),
    { m: preferGsm(member), a: preferGsm(acker) },
    [...nameSteps('a', preferGsm(acker), [24]), ...nameSteps('m', preferGsm(member), [24]), ...nameSteps('a', preferGsm(acker), [12, 6, 3, 1]), ...nameSteps('m', preferGsm(member), [12, 6, 3, 1])],
    fold(c.locale),
  );
  const paras: Para[] = [
    [t.hello(cleanName(c.contactName, ''))],
    [t.ackNotice.line(acker, whenLong(c.ackedAt, c.timeZone, t), member)],
    [t.ackNotice.noNeed],
    { small: t.becauseContact(member) },
  ];
  return {
    sms,
    email: email(t.ackNotice.subject(acker, member), paras, null, t),
    push: {
      title: t.ackNotice.pushTitle(truncate(acker, 40)),
      body: t.ackNotice.pushBody(truncate(acker, 40), truncate(member, 40), at),
      data: { type: 'ack_notice', incident_id: c.incidentId },
    },
  };
}

/**
 * An "I'm on it" that timed out with no check-in. The contacts who were told someone is on it learn
 * that it lapsed and escalation resumes; the one who acknowledged (`toAcker`) is asked whether they
 * reached the member, with their alert link to say so.
 */
export function renderAckLapsed(c: {
  memberName: string; contactName: string; ackedByName: string; ackedAt: Date; timeZone: string; incidentId: string;
  memberPhone?: string | null; toAcker: boolean; ackUrl: string; locale?: Locale;
  /** false: every round has been sent, nobody more is alerted (the text must not say we alert again). */
  resumes?: boolean;
}): Rendered {
  const t = strings(c.locale);
  const l = t.ackLapsed;
  const resumes = c.resumes !== false;
  const member = cleanName(c.memberName, t.aMember);
  const acker = cleanName(c.ackedByName, t.anotherContact);
  const at = clock(c.ackedAt, c.timeZone, t);
  const phone = telLink(c.memberPhone) === null ? null : c.memberPhone!;
  const withLink = (text: string) => (c.toAcker ? `${text}${c.ackUrl}` : `${text} ${c.ackUrl}`);
  const sms = fitSms(
    (o: { m: string; a: string; call: boolean }) =>
      withLink(`${c.toAcker ? l.askerSms(o.m, at) : resumes ? l.sms(o.a, o.m, at) : l.smsNoResume(o.a, o.m, at)}${!c.toAcker && o.call && phone ? ` ${t.alert.smsCall(phone)}` : ''}`),
    { m: preferGsm(member), a: preferGsm(acker), call: true },
    [...nameSteps('a', preferGsm(acker), [24]), ...nameSteps('m', preferGsm(member), [24]), { call: false }, ...nameSteps('a', preferGsm(acker), [12, 6, 3, 1]), ...nameSteps('m', preferGsm(member), [12, 6, 3, 1])],
    fold(c.locale),
  );
  const long = whenLong(c.ackedAt, c.timeZone, t);
  const paras: Para[] = c.toAcker
    ? [[t.hello(cleanName(c.contactName, ''))], [resumes ? l.askerLine(long, member) : l.askerLineNoResume(long, member)], ...callPara(t, member, phone), [l.askerTodo(member)], { small: t.becauseContact(member) }]
    : [[t.hello(cleanName(c.contactName, ''))], [l.line(acker, long, member)], ...callPara(t, member, phone), [resumes ? l.resumes : l.resumesNot], { small: t.becauseContact(member) }];
  const m40 = truncate(member, 40);
  return {
    sms,
    email: email(c.toAcker ? l.askerSubject(member) : l.subject(member), paras, { href: c.ackUrl, label: c.toAcker ? l.askerButton : t.alert.button }, t),
    push: {
      title: c.toAcker ? l.askerPushTitle(m40) : l.pushTitle(m40),
      body: c.toAcker ? l.askerPushBody(m40) : l.pushBody(truncate(acker, 40), m40),
      data: { type: 'ack_lapsed', incident_id: c.incidentId, url: c.ackUrl },
    },
  };
}

export function renderCheckInNote(c: { memberName: string; contactName: string; at: Date; timeZone: string; locale?: Locale }): Rendered {
  const t = strings(c.locale);
  const member = cleanName(c.memberName, t.aMember);
  const at = when(c.at, c.timeZone, t);
  const sms = fitSms(
    (o: { name: string }) => t.checkInNote.sms(o.name, at),
    { name: preferGsm(member) },
    nameSteps('name', preferGsm(member), [24, 12, 6, 3, 1]),
    fold(c.locale),
  );
  const paras: Para[] = [
    [t.hello(cleanName(c.contactName, ''))],
    [t.checkInNote.line(member, whenLong(c.at, c.timeZone, t))],
    { small: t.checkInNote.because(member) },
  ];
  return {
    sms,
    email: email(t.checkInNote.subject(member, clock(c.at, c.timeZone, t)), paras, null, t),
    push: { title: t.checkInNote.pushTitle(truncate(member, 40)), body: t.checkInNote.pushBody(truncate(member, 40), at), data: { type: 'check_in_note' } },
  };
}

/** The invitation asks for consent: email (subject + text) and SMS, in the contact's language. */
export function renderInvitation(c: { memberName: string; contactName: string; link: string; locale?: Locale }): { sms: string; email: { subject: string; text: string } } {
  const t = strings(c.locale);
  const member = cleanName(c.memberName, t.aMember);
  const sms = fitSms(
    (o: { m: string }) => t.invitation.sms(o.m, c.link),
    { m: preferGsm(member) },
    nameSteps('m', preferGsm(member), [24, 12, 6]),
    fold(c.locale),
  );
  return { sms, email: { subject: truncate(oneLine(t.invitation.subject(member)), 150), text: t.invitation.text(cleanName(c.contactName, ''), member, c.link) } };
}

/**
 * A copy sent again through another provider (no delivery receipt came for the first): it says so,
 * in the reader's language, so two alerts read as one alert twice, not as two emergencies.
 */
export function markRepeat<T extends { subject: string | null; body: string; html: string | null }>(text: T, channel: string, locale: unknown): T {
  const r = strings(locale).repeat;
  if (channel === 'sms') return { ...text, body: text.body.startsWith('Pruuf:') ? `${r.smsTag}${text.body.slice('Pruuf:'.length)}` : `${r.smsTag} ${text.body}` };
  const subject = text.subject === null ? null : `${r.subjectTag}${text.subject}`;
  if (channel === 'email') {
    const html = text.html === null ? null : text.html.replace(/(<div style="max-width:560px[^>]*>)/, `$1<p style="margin:0 0 14px;font-size:14px;color:#71717a">${escapeHtml(r.line)}</p>`);
    return { ...text, subject, body: `${r.line}\n\n${text.body}`, html };
  }
  return { ...text, subject };
}
