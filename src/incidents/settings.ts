import { planSettings } from '../billing/entitlements.js';
import type { Config } from '../config.js';
import type { IncidentSettings } from './engine.js';

export function incidentSettings(config: Config, linkSecret: string): IncidentSettings {
  return {
    escalationMinutes: config.ESCALATION_MINUTES,
    maxRounds: config.MAX_ESCALATION_ROUNDS,
    ackTimeoutMinutes: config.ACK_TIMEOUT_MINUTES,
    links: { publicBaseUrl: config.publicBaseUrl, linkSecret, ackLinkTtlDays: config.ACK_LINK_TTL_DAYS },
    plans: planSettings(config),
    voice: { callAfterSteps: config.VOICE_CALL_AFTER_STEPS, sos: config.VOICE_SOS },
  };
}
