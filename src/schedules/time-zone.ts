import { IANAZone } from 'luxon';

/** IANA zone names only ("Europe/London", "UTC"); offsets like "UTC+2" are not places and drift with DST rules. */
export function isValidTimeZone(zone: string): boolean {
  if (zone === '' || /^(UTC|GMT)?[+-]\d/.test(zone)) return false;
  return IANAZone.isValidZone(zone);
}
