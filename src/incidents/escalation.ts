import type { Plan, PlanContact } from './plan.js';

/**
 * Escalation, as a pure function of the plan and where the incident stands.
 * Round 1 alerts one tier per step: tier 1 at alert_at, the next tier every escalation_minutes.
 * Later rounds (up to max_rounds) alert every tier at once, every escalation_minutes.
 */
export type Position = { step_no: number; round: number; tier_index: number };
export type Step = { step_no: number; round: number; tiers: number[]; contacts: PlanContact[]; next: Position; more: boolean };

function step(pos: Position, tiers: Plan['tiers'], next: Position, maxRounds: number): Step {
  return {
    step_no: pos.step_no + 1,
    round: pos.round,
    tiers: tiers.map((t) => t.tier),
    contacts: tiers.flatMap((t) => t.contacts),
    next,
    more: next.round <= maxRounds,
  };
}

export function stepAt(plan: Plan, pos: Position, maxRounds: number): Step | null {
  if (plan.tiers.length === 0 || pos.round > maxRounds) return null;
  const tiers = pos.round === 1 ? [plan.tiers[pos.tier_index]!] : plan.tiers;
  const next: Position = pos.round === 1 && pos.tier_index + 1 < plan.tiers.length
    ? { step_no: pos.step_no + 1, round: 1, tier_index: pos.tier_index + 1 }
    : { step_no: pos.step_no + 1, round: pos.round + 1, tier_index: 0 };
  return step(pos, tiers, next, maxRounds);
}

/** "This needs more help": every tier not alerted yet in round 1 (all of them in later rounds), now. */
export function remainingStep(plan: Plan, pos: Position, maxRounds: number): Step | null {
  if (plan.tiers.length === 0) return null;
  const rest = pos.round === 1 ? plan.tiers.slice(pos.tier_index) : plan.tiers;
  const tiers = rest.length > 0 ? rest : plan.tiers;
  return step(pos, tiers, { step_no: pos.step_no + 1, round: Math.max(pos.round, 1) + 1, tier_index: 0 }, maxRounds);
}
