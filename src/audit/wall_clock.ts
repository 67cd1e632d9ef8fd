/**
 * Wall-clock time for the statement tracker, read without a Date.now() per statement.
 *
 * Date.now() is a call into V8's runtime: made for every statement it was about 1% of the
 * relay's CPU in perf. The tracker times statements with the monotonic clock anyway, so the
 * wall clock is read once a second and the offset between the two clocks added in between.
 * A step or slew of the system clock therefore shows within a second.
 */
import { performance } from 'node:perf_hooks';

/** How long an offset between the clocks is used before it is read again, in ms. */
const REREAD_MS = 1000;

export class WallClock {
  private offset = 0;
  private readAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly readWall: () => number = Date.now,
    private readonly readMonotonic: () => number = () => performance.now(),
  ) {}

  /** Milliseconds since the Unix epoch at `monotonic`, a reading of the monotonic clock taken now. */
  at(monotonic: number): number {
    if (monotonic - this.readAt >= REREAD_MS) {
      this.offset = this.readWall() - this.readMonotonic();
      this.readAt = monotonic;
    }
    return monotonic + this.offset;
  }
}
