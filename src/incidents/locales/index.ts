import { de } from './de.js';
import { en } from './en.js';
import { es } from './es.js';
import { fr } from './fr.js';
import { LOCALES, type Locale, type Strings } from './types.js';

export { LOCALES, type Locale, type Strings };

const TABLES: Record<Locale, Strings> = { en, es, de, fr };

/** A stored locale is a row like any other (an older version, a hand in psql): anything unknown reads as English. */
export function localeOf(raw: unknown): Locale {
  return typeof raw === 'string' && (LOCALES as readonly string[]).includes(raw) ? (raw as Locale) : 'en';
}

export const strings = (locale: unknown): Strings => TABLES[localeOf(locale)];
