//! A golden sample's cube as a deterministic, shuffled stream of photon events, with no
//! memory of its own: what a detector would deliver for that observation, in an order that
//! has nothing to do with the cube's layout, plus events the binner must not count.
//!
//! A cell (band, y, x) holding `c` counts yields `c` events, one in each of the passes
//! `0..c`. Each pass visits the cube's 25,000 cells in its own pseudo-random order (the
//! bijection `k -> (a k + b) mod 2^15` with `a` odd, cells at 25,000 and above skipped), so
//! bands and positions are interleaved and a cell's events are spread over the stream.
//! Each event gets a position inside its pixel, `x + u / 4096` and `y + v / 4096`, and an
//! energy inside its band, `lo + (hi - lo) w / 256` eV (`u, v < 4096`, `w < 256`): every one
//! an exact f32, so it bins back into its own cell; `u = 0` puts it on the pixel's lower
//! edge and `w = 0` on the band's lower edge, both of which belong to the cell.
//!
//! After a real event, one time in eight, the stream injects an event that must not be
//! binned: off the stamp by up to one pixel on one of its four sides (energy inside a
//! band), or an energy below the lowest band (`[-200, 200)` eV: negative, zero and just
//! below 0.2 keV) or at and above the highest edge (`[10, 15)` keV), at a position on the
//! stamp. [`Stream::injected_stamp`] and [`Stream::injected_bands`] count them.

use runtime::events::BAND_EDGES_EV;
use runtime::{BANDS, IMAGE_SIDE};

/// One photon event: stamp pixel coordinates and energy (PI, eV).
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// x, continuous pixels.
    pub x: f32,
    /// y, continuous pixels.
    pub y: f32,
    /// Energy, eV.
    pub pi_ev: f32,
}

/// Cells per band.
const PLANE: usize = IMAGE_SIDE * IMAGE_SIDE;
/// The permutation's domain: the smallest power of two holding the cube's cells.
const DOMAIN: u32 = 1 << 15;
const _: () = assert!(BANDS * PLANE <= DOMAIN as usize);

/// The event stream of one cube (see the module docs).
pub struct Stream<'a> {
    counts: &'a [u16],
    /// The current pass and the number of passes (the largest count).
    pass: u16,
    passes: u16,
    /// Next index of the current pass's permutation, and the permutation.
    k: u32,
    mul: u32,
    add: u32,
    rng: u32,
    inject: bool,
    /// Real events given so far.
    pub golden: u32,
    /// Injected events off the stamp.
    pub injected_stamp: u32,
    /// Injected events outside the bands.
    pub injected_bands: u32,
}

impl<'a> Stream<'a> {
    /// The stream of `counts` (`[band][y][x]`, the model's cube) with seed `seed`.
    pub fn new(counts: &'a [u16], seed: u32) -> Self {
        let passes = counts.iter().copied().max().unwrap_or(0);
        let mut s = Self {
            counts,
            pass: 0,
            passes,
            k: 0,
            mul: 1,
            add: 0,
            rng: seed | 1,
            inject: false,
            golden: 0,
            injected_stamp: 0,
            injected_bands: 0,
        };
        s.shuffle();
        s
    }

    /// xorshift32 (Marsaglia 2003).
    fn next_u32(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// A new permutation for the next pass.
    fn shuffle(&mut self) {
        let r = self.next_u32();
        self.mul = (r & (DOMAIN - 1)) | 1;
        self.add = (r >> 16) & (DOMAIN - 1);
    }

    /// A fraction `n / 4096`, `n < 4096`: exact in f32, and so is `pixel + fraction`.
    fn frac(&mut self) -> f32 {
        (self.next_u32() >> 20) as f32 / 4096.0
    }

    /// A random position on the stamp.
    fn on_stamp(&mut self) -> (f32, f32) {
        let r = self.next_u32();
        let (x, y) = ((r % 50) as f32, ((r >> 8) % 50) as f32);
        (x + self.frac(), y + self.frac())
    }

    /// An energy inside band `b`: `lo + (hi - lo) w / 256` (exact in f32: below 2^14 with
    /// 8 fraction bits).
    fn in_band(&mut self, b: usize) -> f32 {
        let (lo, hi) = (BAND_EDGES_EV[b], BAND_EDGES_EV[b + 1]);
        let w = (self.next_u32() >> 24) as f32;
        lo + (hi - lo) * w / 256.0
    }

    /// An event that must not be binned.
    fn injected(&mut self) -> Event {
        let kind = self.next_u32() % 6;
        let (x, y) = self.on_stamp();
        let band = (self.next_u32() % BANDS as u32) as usize;
        let pi_ev = self.in_band(band);
        let side = IMAGE_SIDE as f32;
        let (f, g) = (self.frac(), self.frac());
        let e = match kind {
            0 => Event {
                x: f - 1.0,
                y,
                pi_ev,
            },
            1 => Event {
                x: side + f,
                y,
                pi_ev,
            },
            2 => Event {
                x,
                y: g - 1.0,
                pi_ev,
            },
            3 => Event {
                x,
                y: side + g,
                pi_ev,
            },
            4 => Event {
                x,
                y,
                pi_ev: 400.0 * f - 200.0,
            },
            _ => Event {
                x,
                y,
                pi_ev: 10_000.0 + 5000.0 * f,
            },
        };
        if kind < 4 {
            self.injected_stamp += 1;
        } else {
            self.injected_bands += 1;
        }
        e
    }
}

impl Iterator for Stream<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.inject {
            self.inject = false;
            return Some(self.injected());
        }
        loop {
            if self.pass >= self.passes {
                return None;
            }
            if self.k == DOMAIN {
                self.pass += 1;
                self.k = 0;
                self.shuffle();
                continue;
            }
            let cell =
                (self.mul.wrapping_mul(self.k).wrapping_add(self.add) & (DOMAIN - 1)) as usize;
            self.k += 1;
            match self.counts.get(cell) {
                Some(&c) if c > self.pass => {}
                _ => continue,
            }
            let (band, pixel) = (cell / PLANE, cell % PLANE);
            let (x, y) = ((pixel % IMAGE_SIDE) as f32, (pixel / IMAGE_SIDE) as f32);
            let e = Event {
                x: x + self.frac(),
                y: y + self.frac(),
                pi_ev: self.in_band(band),
            };
            self.golden += 1;
            self.inject = self.next_u32() & 7 == 0;
            return Some(e);
        }
    }
}
