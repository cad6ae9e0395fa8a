/**
 * One template set per locale: every message a contact reads, with the same variables in each
 * language. A locale file fills this type, so a sentence missing in one language is a type error.
 * SMS templates avoid letters outside the GSM-7 alphabet (á í ó ú ê ç …): one of them would
 * switch the whole text to UCS-2 and halve the room left for the member's name and the link.
 */
export const LOCALES = ['en', 'es', 'de', 'fr'] as const;
export type Locale = (typeof LOCALES)[number];

export type Strings = {
  /** luxon/Intl locale for dates and zone names. */
  intl: string;
  /** luxon patterns: the date part of a short and of a long timestamp. */
  dayPattern: string;
  longPattern: string;
  /** "09:30 EST" + "Thu 15 Jan" → "09:30 EST on Thu 15 Jan" */
  at: (time: string, date: string) => string;
  minutes: (m: number) => string;
  hours: (h: number, m: number) => string;
  days: (d: number, h: number) => string;
  hello: (contact: string) => string;
  /** Under an email's button, before the bare link. */
  buttonFallback: string;
  aMember: string;
  anotherContact: string;
  becauseContact: (member: string) => string;

  alert: {
    againSms: [string, string]; // [short, long]: "Reminder:", "Reminder, still no answer:"
    smsSos: (who: string, terse: boolean, due: string) => string;
    smsMissed: (who: string, due: string) => string;
    smsNote: (note: string) => string;
    smsLate: (late: string, long: boolean) => string;
    smsLast: (when: string, map: string | null) => string;
    smsLocation: (sos: boolean, map: string) => string;
    smsCall: (phone: string) => string;
    smsTodo: [string, string, string];
    smsAckLapsed: (acker: string) => string;
    /** An alert sent while someone is on it (it was queued before they said so). */
    smsAckActive: (acker: string) => string;
    ackActive: (acker: string, at: string, member: string) => string;
    pushAckActive: (acker: string) => string;
    someone: string;
    headline: (member: string, sos: boolean) => string;
    reminderPrefix: string;
    sentLate: (late: string) => string;
    lateLine: (late: string) => string;
    stillNoAnswer: string;
    ackLapsed: (acker: string, at: string, member: string) => string;
    what: (member: string, sos: boolean) => string;
    pressedAt: (when: string) => string;
    dueAt: (when: string) => string;
    noteLabel: (sos: boolean) => string;
    lastCheckIn: (when: string) => string;
    noEarlier: string;
    place: (sos: boolean, withCheckIn: boolean) => string;
    openMap: string;
    within: (m: number) => string;
    callLabel: (member: string) => string;
    todo: string;
    button: string;
    footer: (member: string, ref: string) => string;
    pushTitle: (member: string, sos: boolean) => string;
    pushLate: (late: string) => string;
    pushStill: string;
    pushAckLapsed: (acker: string) => string;
    pushSos: (member: string, at: string) => string;
    pushDue: (when: string) => string;
    pushCall: (phone: string) => string;
    pushTodo: string;
  };
  allClear: {
    says: (name: string, at: string, how: 'check_in' | 'member_resolved') => string;
    sms: (says: string, thanks: boolean) => string;
    subject: (member: string) => string;
    line: (says: string) => string;
    nothingMore: string;
    pushBody: (says: string) => string;
  };
  ackNotice: {
    sms: (acker: string, member: string, at: string) => string;
    line: (acker: string, at: string, member: string) => string;
    noNeed: string;
    subject: (acker: string, member: string) => string;
    pushTitle: (acker: string) => string;
    pushBody: (acker: string, member: string, at: string) => string;
  };
  /** The acknowledgement timed out: the others are told escalation resumes; the one who acked is asked. */
  ackLapsed: {
    sms: (acker: string, member: string, at: string) => string;
    subject: (member: string) => string;
    line: (acker: string, at: string, member: string) => string;
    resumes: string;
    /** Every round has been sent: nobody more is alerted. */
    smsNoResume: (acker: string, member: string, at: string) => string;
    resumesNot: string;
    askerLineNoResume: (at: string, member: string) => string;
    pushTitle: (member: string) => string;
    pushBody: (acker: string, member: string) => string;
    askerSms: (member: string, at: string) => string;
    askerSubject: (member: string) => string;
    askerLine: (at: string, member: string) => string;
    askerTodo: (member: string) => string;
    askerButton: string;
    askerPushTitle: (member: string) => string;
    askerPushBody: (member: string) => string;
  };
  checkInNote: {
    sms: (member: string, at: string) => string;
    line: (member: string, at: string) => string;
    because: (member: string) => string;
    subject: (member: string, at: string) => string;
    pushTitle: (member: string) => string;
    pushBody: (member: string, at: string) => string;
  };
  /**
   * What a phone call says (src/incidents/calls.ts), spoken by Twilio's <Say> in `language`. Keys:
   * 1 I'm on it, 2 needs more help, 9 hear it again. Plain sentences: no links, no abbreviations.
   */
  call: {
    /** Twilio's <Say language="…">. */
    language: string;
    alert: (member: string, sos: boolean, when: string) => string;
    note: (sos: boolean, note: string) => string;
    lastCheckIn: (when: string) => string;
    keys: string;
    noKey: string;
    badKey: string;
    thanks: (member: string) => string;
    escalated: (member: string) => string;
    alreadyOn: (acker: string, member: string) => string;
    allClear: (member: string) => string;
    gone: string;
  };
  /** A copy sent again through another provider because no delivery receipt came. */
  repeat: {
    smsTag: string;
    subjectTag: string;
    line: string;
  };
  invitation: {
    subject: (member: string) => string;
    text: (contact: string, member: string, link: string) => string;
    sms: (member: string, link: string) => string;
  };
};
