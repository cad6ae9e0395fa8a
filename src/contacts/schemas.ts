import { z } from 'zod';
import { Timestamp } from '../http/schemas.js';
import { LOCALES } from '../incidents/locales/index.js';

export const ContactLocale = z.enum(LOCALES).describe('the language of the messages this contact receives (invitation, alerts, all clear)');

/** E.164 after removing the spaces, dots, dashes and brackets people type. */
export const Phone = z
  .string()
  .max(32)
  .transform((v) => v.replace(/[\s().-]/g, ''))
  .pipe(z.string().regex(/^\+[1-9]\d{6,14}$/, 'must be an international number in E.164 form, e.g. +447700900123'));

export const Email = z.string().trim().toLowerCase().max(254).pipe(z.email('must be an email address'));

export const Contact = z
  .object({
    id: z.uuid(),
    name: z.string(),
    email: z.string().nullable(),
    phone: z.string().nullable(),
    tier: z.number().int(),
    notify_on_check_in: z.boolean(),
    locale: ContactLocale,
    status: z.enum(['invited', 'active', 'declined']),
    sms_opted_out: z.boolean().describe('the contact texted STOP: no SMS until they text START'),
    sms_disabled: z.boolean().describe('the number cannot receive SMS (invalid, landline); cleared when the phone changes'),
    sms_disabled_reason: z.string().nullable(),
    email_disabled: z.boolean().describe('the address bounced hard; cleared when the email changes'),
    email_disabled_reason: z.string().nullable(),
    linked: z.boolean().describe('the contact accepted in the app: push alerts and the watching view'),
    channels: z.array(z.enum(['push', 'sms', 'email'])).describe('channels an alert would use now (alerts use every channel on every plan; consent and turned-off addresses still apply)'),
    reachable: z.boolean().describe('an alert would reach this contact now (channels is not empty)'),
    unreachable_reason: z
      .object({
        code: z.enum(['declined', 'awaiting_consent_no_email', 'awaiting_consent_email_disabled', 'sms_opted_out_no_email', 'addresses_disabled', 'no_channel']),
        message: z.string().describe('what it means and what the member can do, to show as is'),
      })
      .nullable()
      .describe('why an alert would not reach this contact now; null when reachable'),
    invited_at: Timestamp,
    responded_at: Timestamp.nullable(),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .meta({ id: 'Contact' });

const fields = {
  name: z.string().trim().min(1).max(100),
  email: Email.nullable().optional(),
  phone: Phone.nullable().optional(),
  tier: z.number().int().min(1).max(3),
  notify_on_check_in: z.boolean(),
  locale: ContactLocale,
};

export const NewContactBody = z
  .strictObject({ ...fields, tier: fields.tier.default(1), notify_on_check_in: fields.notify_on_check_in.default(false), locale: fields.locale.default('en') })
  .refine((b) => (b.email ?? null) !== null || (b.phone ?? null) !== null, { message: 'give an email or a phone (or both)', path: ['email'] });

export const ContactPatchBody = z
  .strictObject({
    name: fields.name.optional(),
    email: fields.email,
    phone: fields.phone,
    tier: fields.tier.optional(),
    notify_on_check_in: fields.notify_on_check_in.optional(),
    locale: fields.locale.optional(),
  })
  .refine((b) => Object.keys(b).length > 0, 'give at least one field to change');
