/**
 * Prints what contacts read, as they read it: an alert (SMS, email subject and text), a lapsed
 * "I'm on it" notice and an all clear, for a member with and without optional data, in each
 * language asked for. For reviewing wording (`npm run messages:samples -- es de`); no database needed.
 */
import { LOCALES, type Locale } from '../incidents/locales/index.js';
import { renderAckLapsed, renderAlert, renderAllClear } from '../incidents/messages.js';

const asked = process.argv.slice(2).filter((a): a is Locale => (LOCALES as readonly string[]).includes(a));
const locales: Locale[] = asked.length > 0 ? asked : ['en', 'es'];
const ackUrl = 'https://pruuf.example.com/a/AQFrDUkgg5rI6LXdQDqfnGnhVB8nDx07PT1ezkyZmTY7N7Wsy4bnZCiZseGj5zvdDKpVIl6C';
const deadline = new Date('2026-12-07T08:30:00Z');
const opened = new Date('2026-12-07T09:00:00Z');
const members = [
  { label: 'with optional data (name, phone, note, location, last check-in)', memberName: 'Ann Lee', memberPhone: '+15551234567', note: 'Walking the dog by the river, back by 9', lastCheckInAt: new Date('2026-12-06T08:12:00Z'), lastLocation: { lat: 40.7128, lng: -74.006, accuracy_m: 20 } },
  { label: 'without optional data (no display name: named by email; no phone, note, location or check-in)', memberName: 'ann.lee@example.com', memberPhone: null, note: null, lastCheckInAt: null, lastLocation: null },
];

const out: string[] = [];
for (const locale of locales) {
  for (const m of members) {
    const alert = renderAlert({ ...m, contactName: 'Bob', kind: 'missed', deadlineAt: deadline, openedAt: opened, timeZone: 'America/New_York', ackUrl, delayedByMinutes: 0, round: 1, incidentId: '0b6f3c1e-2a4d-4c1b-9b7e-5d2f8a1c3e4f', locale });
    const lapsed = renderAckLapsed({ memberName: m.memberName, contactName: 'Bob', ackedByName: 'Carol', ackedAt: new Date('2026-12-07T09:05:00Z'), timeZone: 'America/New_York', incidentId: 'x', memberPhone: m.memberPhone, toAcker: false, ackUrl, locale });
    const clear = renderAllClear({ memberName: m.memberName, contactName: 'Bob', resolvedAt: new Date('2026-12-07T10:20:00Z'), timeZone: 'America/New_York', how: 'check_in', incidentId: 'x', locale });
    out.push(`### ${locale}: member ${m.label}`, '', 'Alert SMS:', '```', alert.sms, '```', `Alert email subject: ${alert.email.subject}`, '```', alert.email.text, '```',
      'Ack-lapsed notice (SMS):', '```', lapsed.sms, '```', 'All clear (SMS):', '```', clear.sms, '```', '');
  }
}
process.stdout.write(`${out.join('\n')}\n`);
