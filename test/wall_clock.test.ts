import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WallClock } from '../src/audit/wall_clock.js';

describe('wall clock of the statement tracker', () => {
  it('adds the offset read last, and reads it again once a second', () => {
    let wall = 1_800_000_000_000;
    let monotonic = 5_000;
    const clock = new WallClock(
      () => wall,
      () => monotonic,
    );
    assert.equal(clock.at(monotonic), wall);
    monotonic += 400;
    wall += 400;
    assert.equal(clock.at(monotonic), wall);
    // The system clock is stepped an hour ahead: the old offset holds for the rest of the second…
    wall += 3_600_000;
    monotonic += 500;
    wall += 500;
    assert.equal(clock.at(monotonic), wall - 3_600_000);
    // …and a second after the last reading the step shows.
    monotonic += 100;
    wall += 100;
    assert.equal(clock.at(monotonic), wall);
    assert.equal(clock.at(monotonic - 250), wall - 250);
  });

  it('by default follows Date.now()', () => {
    const clock = new WallClock();
    const at = clock.at(performance.now());
    assert.ok(Math.abs(at - Date.now()) < 50, `${at} vs ${Date.now()}`);
  });
});
