/** The one source of "now". Tests inject their own to move time without sleeping. */
export type Clock = () => Date;
export const systemClock: Clock = () => new Date();
