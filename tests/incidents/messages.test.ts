import { describe, expect, it } from '@jest/globals';
import {
  escapeHtml,
  mapLink,
  renderAckLapsed,
  renderAckNotice,
  renderAlert,
  renderAllClear,
  renderCheckInNote,
  renderInvitation,
  renderReminder,
  smsSegments,
  type AlertInput,
  type Rendered,
} from '../../src/incidents/messages.js';
import { graphemes, gsmTransliterate, isGsm, oneLine } from '../../src/incidents/sms.js';
import { signLink } from '../../src/links/tokens.js';

// 2026-01-15 is a Thursday; New York is on EST (UTC-5) in January and EDT (UTC-4) in July.
const SHORT_ACK = 'https://pruuf.app/a/tok123';
// What outbound.ts really sends: base URL + a token signed over the contact id with the incident id as extra (~220 chars).
const REAL_ACK = `https://pruuf.example.com/a/${signLink('s', 'ack', '3efb4ad1-6900-4dc3-9d38-58951009d4bb', new Date('2026-02-15T00:00:00Z'), '9c4b1d2e-1f0a-4e8b-a6c3-2b7d9e0f1a2c')}`;
const base: AlertInput = {
  memberName: 'Ann Lee', contactName: 'Bob', kind: 'missed',
  deadlineAt: new Date('2026-01-15T14:30:00Z'), openedAt: new Date('2026-01-15T15:00:00Z'), timeZone: 'America/New_York',
  lastCheckInAt: new Date('2026-01-14T13:02:00Z'), lastLocation: { lat: 40.7128, lng: -74.006, accuracy_m: 20 },
  note: null, ackUrl: SHORT_ACK, delayedByMinutes: 0, round: 1, incidentId: 'inc-1',
};
const alert = (over: Partial<AlertInput> = {}): Rendered => renderAlert({ ...base, ...over });
const texts = (r: Rendered): string[] => [r.sms, r.email.subject, r.email.text, r.email.html, r.push.title, r.push.body];
const MAP = 'https://maps.google.com/?q=40.7128,-74.006';

describe('smsSegments', () => {
  it.each<[string, number, string]>([
    ['an empty text', 1, ''], ['160 GSM characters', 1, 'a'.repeat(160)], ['161 GSM characters', 2, 'a'.repeat(161)],
    ['306 GSM characters', 2, 'a'.repeat(306)], ['307 GSM characters', 3, 'a'.repeat(307)], ['460 GSM characters', 4, 'a'.repeat(460)],
    ['80 euro signs (two septets each)', 1, '€'.repeat(80)], ['81 euro signs', 2, '€'.repeat(81)],
    ['159 GSM characters and a euro sign', 2, `${'a'.repeat(159)}€`], ['158 GSM characters and a bracket', 1, `${'a'.repeat(158)}[`],
    ['70 UCS-2 characters', 1, '中'.repeat(70)], ['71 UCS-2 characters', 2, '中'.repeat(71)],
    ['134 UCS-2 characters', 2, '中'.repeat(134)], ['135 UCS-2 characters', 3, '中'.repeat(135)],
    ['100 GSM characters', 1, 'a'.repeat(100)], ['100 GSM characters and one ł (all UCS-2 then)', 2, `${'a'.repeat(100)}ł`],
    ['100 GSM characters and one …', 2, `${'a'.repeat(100)}…`],
    ['306 septets whose euro sign would straddle segments 1 and 2', 3, `${'a'.repeat(152)}€${'a'.repeat(152)}`],
    ['35 emoji (two UTF-16 units each)', 1, '😀'.repeat(35)], ['36 emoji', 2, '😀'.repeat(36)],
    ['67 emoji (134 units, but only 33 whole emoji fit in a segment)', 3, '😀'.repeat(67)],
  ])('counts %s as %i segment(s)', (_what, expected, text) => {
    expect(smsSegments(text)).toBe(expected);
  });

  it('knows the GSM alphabet', () => {
    expect(isGsm("Pruuf: I'm on it @£$¥èéÆßÄÖÑÜ§¿äöñüà {}[]~|^€")).toBe(true);
    for (const ch of ['…', '’', 'ł', 'ç', '王', '😀']) expect(isGsm(ch)).toBe(false);
  });
});

describe('renderAlert for a missed check-in', () => {
  it('names the member and the missed deadline in local time and date', () => {
    const r = alert();
    expect(r.sms).toContain('Ann Lee missed a check-in due 09:30 EST on Thu 15 Jan');
    expect(r.push.title).toBe('Ann Lee missed a check-in');
    expect(r.push.body).toContain('09:30 EST on Thu 15 Jan');
    expect(r.email.subject).toBe('Ann Lee missed a check-in');
    expect(r.email.text).toContain('It was due at 09:30 EST on Thursday 15 January 2026 (Eastern Standard Time).');
  });

  it('renders Asia/Kolkata times with the half-hour offset', () => {
    const r = alert({ timeZone: 'Asia/Kolkata' });
    expect(r.sms).toContain('due 20:00 GMT+5:30 on Thu 15 Jan');
    expect(r.email.text).toContain('20:00 GMT+5:30 on Thursday 15 January 2026 (India Standard Time)');
  });

  it('renders summer time with the summer abbreviation', () => {
    expect(alert({ deadlineAt: new Date('2026-07-15T13:30:00Z') }).sms).toContain('due 09:30 EDT on Wed 15 Jul');
  });

  it('falls back to UTC rather than failing on an unknown time zone', () => {
    expect(alert({ timeZone: 'Mars/Olympus' }).sms).toContain('due 14:30 UTC on Thu 15 Jan');
  });

  it('gives the last check-in time and a map link when a location was shared', () => {
    const r = alert();
    expect(r.sms).toContain(`Last check-in 08:02 EST on Wed 14 Jan, at ${MAP}`);
    expect(r.email.text).toContain('Last check-in: 08:02 EST on Wednesday 14 January 2026');
    expect(r.email.text).toContain(`(${MAP}) (within 20 m)`);
    expect(r.email.html).toContain(`href="${MAP}"`);
  });

  it('has no map link when no location was shared', () => {
    for (const t of texts(alert({ lastLocation: null }))) expect(t).not.toContain('maps.google.com');
  });

  it('ignores a location with impossible coordinates', () => {
    expect(mapLink({ lat: Number.NaN, lng: 1 })).toBeNull();
    expect(mapLink({ lat: 91, lng: 1 })).toBeNull();
    expect(mapLink({ lat: -0.000001, lng: 151.2093123 })).toBe('https://maps.google.com/?q=0,151.20931');
  });

  it('says when there is no earlier check-in on record', () => {
    expect(alert({ lastCheckInAt: null, lastLocation: null }).email.text).toContain('There is no earlier check-in on record.');
  });

  it('tells the contact what to do and gives a big I am on it button', () => {
    const r = alert();
    expect(r.email.text).toContain("Call them or go and check on them. If you are taking care of it, tap I'm on it so others know.");
    expect(r.sms).toContain("Call them or go and check on them. If you are taking care of it, tap I'm on it so others know: ");
    expect(r.email.html).toMatch(/<a href="https:\/\/pruuf\.app\/a\/tok123" style="display:inline-block[^"]*">I&#39;m on it<\/a>/);
  });

  it('carries the acknowledgement link in every channel', () => {
    const r = alert({ ackUrl: REAL_ACK });
    expect(r.sms.endsWith(REAL_ACK)).toBe(true);
    expect(r.email.text).toContain(`I'm on it: ${REAL_ACK}`);
    expect(r.email.html).toContain(`href="${REAL_ACK}"`);
    expect(r.push.data).toEqual({ type: 'alert', incident_id: 'inc-1', url: REAL_ACK });
  });

  it('does not guess the member gender', () => {
    for (const t of texts(alert({ round: 2, delayedByMinutes: 5 }))) expect(t).not.toMatch(/\b(her|his|she|he|him)\b/i);
  });

  it('says plainly that a delayed alert is late and by how much', () => {
    const r = alert({ delayedByMinutes: 45 });
    expect(r.sms).toContain('This alert is 45 min late: Pruuf had a problem.');
    expect(r.email.subject).toBe('Ann Lee missed a check-in (sent 45 min late)');
    expect(r.email.text).toContain('This alert is 45 min late because of a problem at Pruuf. We are sorry.');
    expect(r.push.body).toMatch(/^Sent 45 min late because of a Pruuf problem\./);
  });

  it.each([[90, '1 h 30 min'], [120, '2 h'], [1500, '1 day 1 h'], [2880, '2 days']])('writes a delay of %i minutes as %s', (m, text) => {
    expect(alert({ delayedByMinutes: m }).email.text).toContain(`This alert is ${text} late`);
  });

  it('does not mention lateness when the alert is on time', () => {
    for (const t of texts(alert())) expect(t).not.toMatch(/\blate\b/);
  });

  it('says it again on round 2, as a reminder with still no answer', () => {
    const r = alert({ round: 2 });
    expect(r.sms).toMatch(/^Pruuf: Reminder, still no answer: Ann Lee missed/);
    expect(r.push.title).toBe('Reminder: Ann Lee missed a check-in');
    expect(r.push.body).toContain('Still no answer.');
    expect(r.email.subject).toBe('Reminder: Ann Lee missed a check-in');
    expect(r.email.text).toContain('Still no answer: nobody has said they are on it yet.');
    for (const t of texts(alert())) expect(t).not.toMatch(/Reminder|Still no answer/);
  });
});

describe('renderAlert for an SOS', () => {
  const sos = (over: Partial<AlertInput> = {}) => alert({ kind: 'sos', deadlineAt: null, note: 'Fell in the kitchen.\nKey under the mat.', ...over });

  it('says who pressed the SOS button and needs help, with the note and the location', () => {
    const r = sos();
    expect(r.sms).toMatch(/^Pruuf: SOS! Ann Lee pressed the SOS button and needs help \(10:00 EST on Thu 15 Jan\)\. Note: "Fell in the kitchen\. Key under the mat\."/);
    expect(r.sms).toContain(`Location: ${MAP}`);
    expect(r.push.title).toBe('SOS: Ann Lee needs help');
    expect(r.email.text).toContain('Ann Lee pressed the SOS button and needs help. They pressed it at 10:00 EST');
    expect(r.email.text).toContain('> Fell in the kitchen.\n> Key under the mat.');
    expect(r.email.html).toContain('Fell in the kitchen.<br>Key under the mat.');
    expect(r.email.text).not.toContain('due at');
  });
});

describe('HTML email', () => {
  it('escapes names and notes, which are user input', () => {
    const r = alert({ kind: 'sos', memberName: '<script>alert(1)</script>', contactName: '"><img src=x onerror=alert(1)>', note: '</blockquote><script>x</script> & co' });
    expect(r.email.html).not.toMatch(/<script|<img/i);
    expect(r.email.html).toContain('&lt;script&gt;alert(1)&lt;/script&gt; pressed the SOS button');
    expect(r.email.html).toContain('Hi &quot;&gt;&lt;img src=x onerror=alert(1)&gt;,');
    expect(r.email.html).toContain('&lt;/blockquote&gt;&lt;script&gt;x&lt;/script&gt; &amp; co');
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  });

  it('is a small document styled inline, with no style or script blocks', () => {
    const html = alert().email.html;
    expect(html).toMatch(/^<!doctype html><html lang="en">.*<\/html>$/s);
    expect(html).not.toMatch(/<style|<script/i);
    expect(html.length).toBeLessThan(6000);
  });

  it('never turns a link that is not http(s) into an href', () => {
    expect(alert({ ackUrl: 'javascript:alert(1)' }).email.html).not.toContain('href="javascript');
  });

  it('keeps newlines and bidi overrides in a name out of the subject and the text', () => {
    const r = alert({ memberName: 'Ann\r\nBcc: evil@example.com \u202Egnp.exe' });
    expect(r.email.subject).toBe('Ann Bcc: evil@example.com gnp.exe missed a check-in');
    for (const t of texts(r)) expect(t).not.toContain('\u202E');
  });
});

describe('SMS length', () => {
  const fits = (sms: string) => expect(smsSegments(sms)).toBeLessThanOrEqual(2);

  it('keeps a long name whole beside the real (short) acknowledgement link, in GSM', () => {
    const r = alert({ memberName: 'Margaret Elizabeth Thompson-Worthington of Little Snoring', ackUrl: REAL_ACK, round: 3, delayedByMinutes: 200 });
    fits(r.sms);
    expect(isGsm(r.sms)).toBe(true);
    expect(r.sms).toContain('Margaret Elizabeth Thompson-Worthington of Little Snoring');
    expect(r.sms.endsWith(REAL_ACK)).toBe(true);
  });

  it('shortens a name too long for two segments, keeping its start and the link', () => {
    const r = alert({ memberName: `Margaret ${'Elizabeth '.repeat(30)}Thompson`, ackUrl: REAL_ACK, round: 3, delayedByMinutes: 200 });
    fits(r.sms);
    expect(r.sms).toMatch(/^Pruuf: (Reminder: )?Margaret Eli/);
    expect(r.sms).toContain('...');
    expect(r.sms.endsWith(REAL_ACK)).toBe(true);
  });

  it('fits a name of 60 emoji and a 500-character note into two UCS-2 segments, keeping the name start', () => {
    const r = alert({ kind: 'sos', memberName: '😀'.repeat(60), note: 'n'.repeat(500) });
    fits(r.sms);
    expect(r.sms).toMatch(/^Pruuf: SOS! 😀+…/u);
    expect(r.sms.endsWith(SHORT_ACK)).toBe(true);
  });

  it('keeps the real acknowledgement link even when an emoji name cannot fit beside it', () => {
    const r = alert({ kind: 'sos', memberName: '😀'.repeat(60), note: '🆘'.repeat(500), ackUrl: REAL_ACK });
    fits(r.sms);
    expect(r.sms).toMatch(/^Pruuf: SOS! Someone you are a contact for needs help/);
    expect(r.sms.endsWith(REAL_ACK)).toBe(true);
  });

  it('keeps a Chinese name when the link leaves room for it', () => {
    const r = alert({ memberName: '王小明', note: '我在厨房摔倒了'.repeat(30) });
    fits(r.sms);
    expect(r.sms).toContain('王小明 missed a check-in');
  });

  it('writes a Polish name in GSM letters rather than dropping it', () => {
    const r = alert({ memberName: 'Łucja Wróbel', ackUrl: REAL_ACK });
    fits(r.sms);
    expect(r.sms).toContain('Lucja Wrobel missed a check-in');
  });

  it('turns a curly apostrophe into a straight one to stay in GSM', () => {
    const r = alert({ memberName: 'Seán O’Brien' });
    expect(isGsm(r.sms)).toBe(true);
    expect(r.sms).toContain("Sean O'Brien missed");
  });

  it('stays within two segments, keeping link and name start, for hundreds of generated names, notes and links', () => {
    const pool = ['a', 'Z', ' ', 'é', 'ë', 'ł', 'Ł', 'ß', '€', '{', '~', '"', '<', '&', '\n', '\t', '王', '明', '😀', '👨‍👩‍👧', '🇺🇦', 'e\u0301', 'م', 'ح', '\u202E', '’', '…'];
    let seed = 42;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const text = (max: number) => Array.from({ length: rand(max + 1) }, () => pool[rand(pool.length)]).join('');
    const urls = [SHORT_ACK, `https://pruuf.example.com/a/${'t'.repeat(100)}`, REAL_ACK];
    for (let i = 0; i < 400; i++) {
      const name = text(i % 4 === 0 ? 120 : 20);
      const url = urls[i % 3]!;
      const when = new Date(Date.UTC(2026, i % 12, 1 + (i % 28), i % 24, i % 60));
      const tz = ['America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe', 'UTC'][i % 4]!;
      const r = alert({
        memberName: name, contactName: text(30), ackUrl: url, note: i % 2 ? text(600) : null, kind: i % 5 ? 'missed' : 'sos',
        delayedByMinutes: i % 3 ? 0 : i * 7, round: 1 + (i % 4), timeZone: tz, lastLocation: i % 2 ? { lat: -33.86 - i / 1e4, lng: 151.2 } : null,
      });
      const others = [
        renderReminder({ memberName: name, deadlineAt: when, timeZone: tz, checkInUrl: url, minutesLeft: i % 90 }),
        renderAllClear({ memberName: name, contactName: 'Bob', resolvedAt: when, timeZone: tz, how: i % 2 ? 'check_in' : 'member_resolved', incidentId: 'i' }),
        renderAckNotice({ memberName: name, contactName: 'Cy', ackedByName: text(80), ackedAt: when, timeZone: tz, incidentId: 'i' }),
        renderCheckInNote({ memberName: name, contactName: 'Bob', at: when, timeZone: tz }),
      ];
      for (const m of [r, ...others]) {
        fits(m.sms);
        expect(m.sms.startsWith('Pruuf: ')).toBe(true);
        expect(m.email.subject).not.toMatch(/[\r\n]/);
        expect(m.email.html).not.toMatch(/<script|<img/i);
        for (const v of Object.values(m.push.data)) expect(typeof v).toBe('string');
      }
      expect(r.sms.endsWith(url)).toBe(true);
      expect(others[0]!.sms).toContain('Reply OK to check in');
      const clean = oneLine(name.replace(/\u202E/g, ''));
      const latin = gsmTransliterate(clean);
      const firsts = [graphemes(clean)[0], graphemes(latin)[0], latin ? undefined : 'Someone you are a contact for'].filter(Boolean) as string[];
      if (clean) expect(firsts.some((f) => r.sms.includes(f))).toBe(true);
    }
  });
});

describe('renderReminder', () => {
  const reminder = (over: Partial<Parameters<typeof renderReminder>[0]> = {}) =>
    renderReminder({ memberName: 'Ann', deadlineAt: new Date('2026-01-15T14:30:00Z'), timeZone: 'America/New_York', checkInUrl: 'https://pruuf.app/c/tok', minutesLeft: 15, ...over });

  it('tells the member when the check-in is due and that replying OK checks in', () => {
    const r = reminder();
    expect(r.sms).toBe('Pruuf: Hi Ann, your check-in is due at 09:30 EST (in 15 min). Reply OK to check in, or tap https://pruuf.app/c/tok');
    expect(r.push).toEqual({ title: 'Time to check in', body: 'Your check-in is due at 09:30 EST (in 15 min). Tap to let your contacts know you are OK.', data: { type: 'reminder', url: 'https://pruuf.app/c/tok' } });
    expect(r.email.subject).toBe('Check in by 09:30 EST');
    expect(r.email.html).toContain('href="https://pruuf.app/c/tok"');
    expect(r.email.html).toContain('I&#39;m OK</a>');
  });

  it('says the check-in is due now when no time is left', () => {
    expect(reminder({ minutesLeft: 0 }).sms).toContain('your check-in is due now (09:30 EST)');
  });

  it('keeps Reply OK and the link within two segments with a real-length link', () => {
    const r = reminder({ memberName: 'Bartholomew', checkInUrl: REAL_ACK.replace('/a/', '/c/'), timeZone: 'Asia/Kolkata' });
    expect(smsSegments(r.sms)).toBeLessThanOrEqual(2);
    expect(r.sms).toContain('Reply OK to check in, or tap https://pruuf.example.com/c/');
  });
});

describe('renderAllClear', () => {
  const clear = (how: 'check_in' | 'member_resolved') =>
    renderAllClear({ memberName: 'Ann', contactName: 'Bob', resolvedAt: new Date('2026-01-15T14:12:00Z'), timeZone: 'America/New_York', how, incidentId: 'inc-1' });

  it('says all clear because the member checked in', () => {
    const r = clear('check_in');
    expect(r.sms).toBe('Pruuf: All clear. Ann checked in at 09:12 EST on Thu 15 Jan. No need to do anything more. Thank you.');
    expect(r.push).toEqual({ title: 'All clear: Ann is OK', body: 'Ann checked in at 09:12 EST on Thu 15 Jan. No need to do anything more.', data: { type: 'all_clear', incident_id: 'inc-1' } });
    expect(r.email.subject).toBe('All clear: Ann is OK');
    expect(r.email.text).toContain('All clear: Ann checked in at 09:12 EST on Thursday 15 January 2026');
  });

  it('says all clear because the member closed the alert themselves', () => {
    expect(clear('member_resolved').sms).toContain('Ann said they are OK and closed the alert at 09:12 EST');
  });
});

describe('renderAckNotice', () => {
  it('tells the other contacts who is on it and for whom', () => {
    const r = renderAckNotice({ memberName: 'Ann', contactName: 'Cy', ackedByName: 'Bob', ackedAt: new Date('2026-01-15T14:40:00Z'), timeZone: 'America/New_York', incidentId: 'inc-1' });
    expect(r.sms).toBe('Pruuf: Bob is on it: since 09:40 EST they are taking care of Ann. No need to act now; we will tell you if that changes.');
    expect(r.push).toEqual({ title: 'Bob is on it', body: 'Since 09:40 EST, Bob is taking care of Ann. We will tell you if that changes.', data: { type: 'ack_notice', incident_id: 'inc-1' } });
    expect(r.email.subject).toBe('Bob is on it for Ann');
    expect(r.email.text).toMatch(/^Hi Cy,\n\nBob is on it: at 09:40 EST/);
  });
});

describe('renderCheckInNote', () => {
  it('tells the contact that the member checked in', () => {
    const r = renderCheckInNote({ memberName: 'Ann', contactName: 'Bob', at: new Date('2026-01-15T14:12:00Z'), timeZone: 'America/New_York' });
    expect(r.sms).toBe('Pruuf: Ann checked in at 09:12 EST on Thu 15 Jan. All is well.');
    expect(r.push).toEqual({ title: 'Ann checked in', body: 'Ann checked in at 09:12 EST on Thu 15 Jan. All is well.', data: { type: 'check_in_note' } });
    expect(r.email.subject).toBe('Ann checked in at 09:12 EST');
    expect(r.email.html).toContain('Ann checked in at 09:12 EST on Thursday 15 January 2026 (Eastern Standard Time). All is well.');
  });
});

describe('every locale', () => {
  const locales = ['en', 'es', 'de', 'fr'] as const;
  const lapsed = (locale: (typeof locales)[number], toAcker: boolean) => renderAckLapsed({
    memberName: 'Ann Lee', contactName: 'Bob', ackedByName: 'Carol', ackedAt: base.openedAt, timeZone: base.timeZone,
    incidentId: 'inc-1', memberPhone: '+15551234567', toAcker, ackUrl: REAL_ACK, locale,
  });
  it.each(locales)('%s: every message fills every variable and fits its SMS in two segments, with the link whole', (locale) => {
    const all: Rendered[] = [
      alert({ locale, ackUrl: REAL_ACK, note: 'Fui al médico, vuelvo pronto', memberPhone: '+15551234567', round: 2, delayedByMinutes: 7, ackLapsed: { by: 'Carol', at: base.openedAt } }),
      alert({ locale, kind: 'sos', ackUrl: REAL_ACK }),
      renderAllClear({ memberName: 'Ann Lee', contactName: 'Bob', resolvedAt: base.openedAt, timeZone: base.timeZone, how: 'check_in', incidentId: 'inc-1', locale }),
      renderAckNotice({ memberName: 'Ann Lee', contactName: 'Bob', ackedByName: 'Carol', ackedAt: base.openedAt, timeZone: base.timeZone, incidentId: 'inc-1', locale }),
      lapsed(locale, false), lapsed(locale, true),
      renderCheckInNote({ memberName: 'Ann Lee', contactName: 'Bob', at: base.openedAt, timeZone: base.timeZone, locale }),
    ];
    for (const r of all) {
      for (const text of texts(r)) expect(text).not.toMatch(/undefined|null|NaN|\[object/);
      expect(smsSegments(r.sms)).toBeLessThanOrEqual(2);
      expect(r.sms.startsWith('Pruuf:')).toBe(true);
    }
    expect(all[0]!.sms).toContain(REAL_ACK);
    const inv = renderInvitation({ memberName: 'Ann Lee', contactName: 'Bob', link: 'https://pruuf.example.com/i/abc', locale });
    expect(inv.sms).toContain('https://pruuf.example.com/i/abc');
    expect(inv.email.text).toContain('Ann Lee');
  });

  it('keeps accents in an SMS that fits, and folds only the ones GSM-7 lacks when it would not', () => {
    const short = renderAllClear({ memberName: 'Ann', contactName: 'Bob', resolvedAt: base.openedAt, timeZone: base.timeZone, how: 'member_resolved', incidentId: 'i', locale: 'es' });
    expect(short.sms).toContain('dijo que está bien y cerró la alerta');
    const long = alert({ locale: 'es', ackUrl: REAL_ACK, memberPhone: '+15551234567' });
    expect(isGsm(long.sms)).toBe(true);
    expect(long.sms).toContain('Su teléfono: +15551234567'); // é is in GSM-7; Ú (Último) is folded
  });
});

describe('a repeat (no receipt came for the first)', () => {
  it.each(['en', 'es', 'de', 'fr'] as const)('%s: says it is one, in every channel, and its SMS still fits two segments', (locale) => {
    const r = alert({ locale, repeat: true, ackUrl: REAL_ACK, memberName: 'Annabelle Montgomery-Fitzwilliam', note: 'Gone to the market, back by noon', memberPhone: '+15551234567' });
    expect(r.sms).toMatch(/^Pruuf \(/);
    expect(r.sms).toContain(REAL_ACK);
    expect(smsSegments(r.sms)).toBeLessThanOrEqual(2);
    expect(r.email.subject).toMatch(/^\(/);
    expect(r.email.text.split('\n\n')[1]).toMatch(/\./);
    expect(r.push.title).toMatch(/^\(/);
  });
});
