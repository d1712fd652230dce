//! The on-board event binner: photons arrive as events, one at a time, and the model wants a
//! count cube. [`Binner`] accumulates events into a caller-owned cube laid out as the
//! model's input, `[band][y][x]` (10 bands of 50 x 50 pixels for `edge`), in `u16` as the
//! host's cubes or in `u8` (25,000 B instead of 50,000 B), exactly as the host's
//! `trainer cutout` bins an event list (`trainer/src/survey/cutout.rs`), so the same events
//! give the same cube, and the same estimate, bit for bit.
//!
//! An event is `(x, y, pi_ev)`:
//!
//! - **position** in continuous stamp pixel coordinates, 0-based, f32: pixel `(i, j)` covers
//!   `[i, i + 1) x [j, j + 1)` (the host's `Projection::pixel_index` convention: the pixel
//!   is `(floor x, floor y)`, on the stamp when `0 <= floor < 50`). A position computed in
//!   f64 keeps its pixel only if narrowed towards minus infinity ([`narrow`]); rounding to
//!   nearest can move a position just below an integer onto it.
//! - **energy** as eROSITA event lists carry it: the `PI` column, in **eV** (float32 in the
//!   eSASS / DR1 `EVENTS` table). Band `b` holds `edges[b] <= PI < edges[b + 1]`, with the
//!   edges in eV ([`BAND_EDGES_EV`]: 0.2, 0.3, 0.5, 0.7, 1, 1.4, 2, 3, 5, 7, 10 keV, the
//!   simulator's `band_edges_kev`, which the host rounds to whole eV, exactly representable
//!   in f32). `PI <= 0` (eSASS's secondary pixels of a split pattern) and energies outside
//!   `[0.2, 10)` keV are outside the bands, as on the host.
//!
//! Each event has one [`Outcome`], counted in [`Stats`]: binned, saturated (the pixel
//! already holds the type's largest count, 65535 or 255; the count stays there, as on the
//! host), outside the stamp, or outside the bands (checked first, as the host selects
//! energies before positions). A NaN or infinite coordinate or energy is
//! [`Error::BadEvent`] (the cube is untouched), never a panic.
//!
//! Saturation reaches the estimate: the generated `infer` flags a cube in which any count is
//! the type's largest ([`Flags::SATURATED`], from
//! [`cube_flags`](crate::model::cube_flags)), so a u8 cube with a pixel at 255 is flagged,
//! and [`Binner::flags`] says whether events were actually lost.
//!
//! The band edges are data ([`BandEdges`]); the weight blob does not record them (its
//! [`Meta`](crate::model::Meta) holds the preprocessing, not the binning), so a model trained
//! on other bands needs [`Binner::with_edges`] with its dataset's edges.
//!
//! ```
//! use runtime::events::{Binner, Outcome};
//! let mut cube = [0u8; runtime::CUBE_LEN];
//! let mut b = Binner::new(&mut cube).unwrap();
//! assert_eq!(b.push(24.5, 3.0, 1000.0), Ok(Outcome::Binned)); // band 4: [1.0, 1.4) keV
//! assert_eq!(b.push(50.0, 3.0, 1000.0), Ok(Outcome::OutsideStamp));
//! assert_eq!(b.push(24.5, 3.0, 150.0), Ok(Outcome::OutsideBands));
//! assert!(b.push(f32::NAN, 3.0, 1000.0).is_err());
//! assert_eq!(b.stats().binned, 1);
//! assert_eq!(cube[4 * 2500 + 3 * 50 + 24], 1);
//! ```

use crate::kernels::preprocess::Count;
use crate::model::Flags;
use crate::{BANDS, Error, IMAGE_SIDE};

/// The model's band edges in eV (PI), low edge of band 0 to high edge of band 9: the
/// simulator's `band_edges_kev` times 1000.
pub const BAND_EDGES_EV: [f32; BANDS + 1] = [
    200.0, 300.0, 500.0, 700.0, 1000.0, 1400.0, 2000.0, 3000.0, 5000.0, 7000.0, 10000.0,
];

/// Which value of an event is not finite ([`Error::BadEvent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventField {
    /// The x pixel coordinate.
    X,
    /// The y pixel coordinate.
    Y,
    /// The energy (PI, eV).
    Energy,
}

impl EventField {
    /// Name as printed (`x`, `y`, `pi`).
    pub const fn name(self) -> &'static str {
        match self {
            EventField::X => "x",
            EventField::Y => "y",
            EventField::Energy => "pi",
        }
    }
}

/// Its name (`x`, `y`, `pi`), as [`EventField::name`].
#[cfg(feature = "defmt")]
impl defmt::Format for EventField {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.name())
    }
}

/// `E` band edges in eV, finite and strictly increasing: `E - 1` bands, band `b` holding
/// `edges[b] <= PI < edges[b + 1]`.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandEdges<const E: usize> {
    edges: [f32; E],
}

impl BandEdges<{ BANDS + 1 }> {
    /// The model's bands ([`BAND_EDGES_EV`]).
    pub const EROSITA: Self = Self {
        edges: BAND_EDGES_EV,
    };
}

impl<const E: usize> BandEdges<E> {
    /// Number of bands.
    pub const BANDS: usize = E.saturating_sub(1);

    /// Check and wrap `edges_ev`: at least two, finite, strictly increasing; otherwise
    /// [`Error::BadBandEdges`].
    ///
    /// ```
    /// use runtime::events::BandEdges;
    /// assert!(BandEdges::new([500.0, 2000.0]).is_ok());
    /// assert!(BandEdges::new([500.0, 500.0]).is_err());
    /// assert!(BandEdges::new([f32::NAN, 500.0]).is_err());
    /// assert!(BandEdges::new([500.0]).is_err());
    /// ```
    pub fn new(edges_ev: [f32; E]) -> Result<Self, Error> {
        let increasing = edges_ev.windows(2).all(|w| w[0] < w[1]);
        if E < 2 || !increasing || edges_ev.iter().any(|e| !e.is_finite()) {
            return Err(Error::BadBandEdges);
        }
        Ok(Self { edges: edges_ev })
    }

    /// The edges, eV.
    pub const fn edges(&self) -> &[f32; E] {
        &self.edges
    }

    /// The band of energy `pi_ev`, `None` outside `[edges[0], edges[E - 1])` (and for NaN).
    ///
    /// ```
    /// use runtime::events::BandEdges;
    /// let e = BandEdges::EROSITA;
    /// assert_eq!(e.band(199.99), None);
    /// assert_eq!(e.band(200.0), Some(0));
    /// assert_eq!(e.band(300.0), Some(1));
    /// assert_eq!(e.band(9999.999), Some(9));
    /// assert_eq!(e.band(10000.0), None);
    /// ```
    pub fn band(&self, pi_ev: f32) -> Option<usize> {
        let (first, last) = (*self.edges.first()?, *self.edges.last()?);
        if !(pi_ev >= first && pi_ev < last) {
            return None;
        }
        // The number of edges at or below the energy, at least 1 (edges[0] <= pi).
        Some(
            self.edges
                .partition_point(|&e| e <= pi_ev)
                .saturating_sub(1),
        )
    }
}

/// What became of one event.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counted in its pixel and band.
    Binned,
    /// Its pixel already held the largest count of the cube's type: not counted, the count
    /// stays at the maximum (as the host's `cutout` does at 65535).
    Saturated,
    /// Its position is off the stamp.
    OutsideStamp,
    /// Its energy is outside the bands (including `PI <= 0`).
    OutsideBands,
}

/// Events per [`Outcome`] since the binner started (saturating at `u32::MAX`), and the
/// refused ones.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Counted into the cube.
    pub binned: u32,
    /// Lost to a saturated pixel.
    pub saturated: u32,
    /// Off the stamp.
    pub outside_stamp: u32,
    /// Outside the bands.
    pub outside_bands: u32,
    /// Refused with [`Error::BadEvent`] (NaN or infinite values).
    pub invalid: u32,
}

impl Stats {
    /// Every event pushed, refused ones included.
    pub fn total(&self) -> u64 {
        [
            self.binned,
            self.saturated,
            self.outside_stamp,
            self.outside_bands,
            self.invalid,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum()
    }
}

/// Accumulates events into a count cube `[band][y][x]` of `E - 1` bands of `H x W` pixels
/// (by default the model's: 10 bands, 50 x 50), with counts of type `N` (`u16` or `u8`).
/// The cube is the caller's (a static, the stack, a DMA buffer); the binner borrows it and
/// needs 72 B of its own besides on a 32-bit core (the borrow, the edges, the statistics).
/// See the [module docs](self).
#[derive(Debug)]
pub struct Binner<
    'c,
    N: Count,
    const E: usize = { BANDS + 1 },
    const H: usize = IMAGE_SIDE,
    const W: usize = IMAGE_SIDE,
> {
    cube: &'c mut [N],
    edges: BandEdges<E>,
    stats: Stats,
}

impl<'c, N: Count> Binner<'c, N> {
    /// A binner for the model's cube ([`CUBE_LEN`](crate::CUBE_LEN) counts) and bands
    /// ([`BAND_EDGES_EV`]); clears `cube`. [`Error::BadLength`] for another length.
    pub fn new(cube: &'c mut [N]) -> Result<Self, Error> {
        Self::with_edges(cube, BandEdges::EROSITA)
    }
}

impl<'c, N: Count, const E: usize, const H: usize, const W: usize> Binner<'c, N, E, H, W> {
    /// Counts in the cube: `(E - 1) H W`.
    pub const LEN: usize = BandEdges::<E>::BANDS * H * W;

    /// A binner with band edges `edges` (for example from
    /// [`BandEdges::new`] with a dataset's own); clears `cube`, which must hold
    /// [`Binner::LEN`] counts ([`Error::BadLength`] otherwise).
    pub fn with_edges(cube: &'c mut [N], edges: BandEdges<E>) -> Result<Self, Error> {
        if cube.len() != Self::LEN {
            return Err(Error::BadLength {
                expected: Self::LEN,
                got: cube.len(),
            });
        }
        cube.fill(N::default());
        Ok(Self {
            cube,
            edges,
            stats: Stats::default(),
        })
    }

    /// Bin one event: position `(x, y)` in stamp pixels, energy `pi_ev` in eV (see the
    /// [module docs](self)). [`Error::BadEvent`] if a value is NaN or infinite.
    #[inline]
    pub fn push(&mut self, x: f32, y: f32, pi_ev: f32) -> Result<Outcome, Error> {
        let bad = if !x.is_finite() {
            Some(EventField::X)
        } else if !y.is_finite() {
            Some(EventField::Y)
        } else if !pi_ev.is_finite() {
            Some(EventField::Energy)
        } else {
            None
        };
        if let Some(field) = bad {
            self.stats.invalid = self.stats.invalid.saturating_add(1);
            return Err(Error::BadEvent { field });
        }
        let outcome = self.bin(x, y, pi_ev);
        let n = match outcome {
            Outcome::Binned => &mut self.stats.binned,
            Outcome::Saturated => &mut self.stats.saturated,
            Outcome::OutsideStamp => &mut self.stats.outside_stamp,
            Outcome::OutsideBands => &mut self.stats.outside_bands,
        };
        *n = n.saturating_add(1);
        Ok(outcome)
    }

    /// [`Binner::push`] of finite values.
    #[inline(always)]
    fn bin(&mut self, x: f32, y: f32, pi_ev: f32) -> Outcome {
        let Some(band) = self.edges.band(pi_ev) else {
            return Outcome::OutsideBands;
        };
        let (Some(i), Some(j)) = (pixel(x, W), pixel(y, H)) else {
            return Outcome::OutsideStamp;
        };
        match self.cube.get_mut((band * H + j) * W + i) {
            Some(c) if *c == N::MAX => Outcome::Saturated,
            Some(c) => {
                *c = c.incremented();
                Outcome::Binned
            }
            // Not reached: band < E - 1, j < H, i < W and the length was checked.
            None => Outcome::OutsideStamp,
        }
    }

    /// The events counted so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// [`Flags::SATURATED`] if an event was lost to a saturated pixel, [`Flags::EMPTY_CUBE`]
    /// if none was binned. (The estimate's flags come from the cube itself, which also
    /// flags a pixel that reached the maximum without losing an event.)
    pub fn flags(&self) -> Flags {
        let mut f = Flags::NONE;
        if self.stats.saturated > 0 {
            f |= Flags::SATURATED;
        }
        if self.stats.binned == 0 {
            f |= Flags::EMPTY_CUBE;
        }
        f
    }

    /// The cube as binned so far, `[band][y][x]`.
    pub fn cube(&self) -> &[N] {
        self.cube
    }

    /// The band edges.
    pub fn edges(&self) -> &BandEdges<E> {
        &self.edges
    }

    /// Start a new observation: zero the cube and the statistics.
    pub fn clear(&mut self) {
        self.cube.fill(N::default());
        self.stats = Stats::default();
    }

    /// End the observation: the binned cube (for `infer`) and the statistics.
    pub fn finish(self) -> (&'c [N], Stats) {
        (self.cube, self.stats)
    }
}

/// The pixel index of finite coordinate `v` on an axis of `n` pixels: `floor v` if that
/// lies in `[0, n)`. For a whole number `n`, `0 <= floor v < n` exactly when `0 <= v < n`,
/// and there `floor v` is the truncation `v as usize` (one `VCVT` on a Cortex-M4F, no call
/// to `floorf`); -0.0 is pixel 0, as `floor` gives -0.0 >= 0.
#[inline(always)]
fn pixel(v: f32, n: usize) -> Option<usize> {
    // `n as f32` is exact for any stamp (n < 2^24).
    (v >= 0.0 && v < n as f32).then_some(v as usize)
}

/// `x` as the largest f32 not above it (rounding towards minus infinity), so that
/// `floor(narrow(x)) == floor(x)`: how a position computed in f64 (the host's projection)
/// enters [`Binner::push`] without moving to the next pixel. NaN stays NaN, infinities stay.
///
/// ```
/// use runtime::events::narrow;
/// let x = 25.0 - 1e-9; // pixel 24 in f64; `x as f32` is 25.0, pixel 25
/// assert_eq!(x as f32, 25.0);
/// assert!(narrow(x) < 25.0);
/// assert_eq!(narrow(3.5), 3.5);
/// assert_eq!(narrow(-1e-50), -f32::from_bits(1)); // below 0: pixel -1, as in f64
/// ```
pub fn narrow(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) > x { f.next_down() } else { f }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CUBE_LEN;
    use std::vec;
    use std::vec::Vec;

    /// The host's rule (`trainer/src/survey/events.rs` `band_of`), written out in f64 over
    /// the simulator's edges in keV, rounded to whole meV as the host does.
    fn host_band(pi: f64) -> Option<usize> {
        let kev = [0.2, 0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 5.0, 7.0, 10.0f64];
        let ev: Vec<f64> = kev.iter().map(|k| (k * 1e6).round() / 1e3).collect();
        (0..10).find(|&b| ev[b] <= pi && pi < ev[b + 1])
    }

    fn at(band: usize, y: usize, x: usize) -> usize {
        (band * 50 + y) * 50 + x
    }

    /// Every band edge exactly, the next f32 on either side, below and above the range,
    /// zero and negative PI: the band of the host's f64 rule.
    #[test]
    fn band_edges_exactly_and_around() {
        let kev = [0.2, 0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 5.0, 7.0, 10.0f32];
        let mut cube = vec![0u16; CUBE_LEN];
        let mut b = Binner::new(&mut cube).unwrap();
        let mut want = vec![0u16; CUBE_LEN];
        let mut cases = Vec::new();
        for (k, e) in kev.iter().enumerate() {
            let ev = 1000.0 * e; // f32: exactly the whole eV
            assert_eq!(ev, ev.round(), "{e} keV");
            cases.extend([ev.next_down(), ev, ev.next_up()]);
            if k + 1 < kev.len() {
                cases.push(0.5 * (ev + 1000.0 * kev[k + 1]));
            }
        }
        cases.extend([0.0, -0.0, -5.0, 1.0, 199.0, 10_001.0, 20_000.0, f32::MAX]);
        for (n, &pi) in cases.iter().enumerate() {
            let (x, y) = (n % 50, n / 50);
            let got = b.push(x as f32 + 0.5, y as f32 + 0.5, pi).unwrap();
            match host_band(f64::from(pi)) {
                Some(band) => {
                    assert_eq!(got, Outcome::Binned, "{pi}");
                    want[at(band, y, x)] += 1;
                }
                None => assert_eq!(got, Outcome::OutsideBands, "{pi}"),
            }
        }
        // 200 eV is band 0, 300 eV band 1 ... 9999.999 band 9; 10 keV and 199.99 outside.
        assert_eq!(BandEdges::EROSITA.band(200.0), Some(0));
        assert_eq!(BandEdges::EROSITA.band(300.0f32.next_down()), Some(0));
        assert_eq!(BandEdges::EROSITA.band(7000.0), Some(9));
        assert_eq!(BandEdges::EROSITA.band(10000.0f32.next_down()), Some(9));
        let s = b.stats();
        assert_eq!(b.cube(), &want[..]);
        assert_eq!(
            s.binned as usize,
            want.iter().map(|&c| c as usize).sum::<usize>()
        );
        // 199.99..., 10000, 10000.0..01, 0, -0, -5, 1, 199, 10001, 20000, MAX
        assert_eq!(s.outside_bands, 11);
    }

    /// Pixel `i` covers `[i, i + 1)`: the floor of each coordinate, on the stamp when in
    /// `[0, 50)`; -0.0 is pixel 0, the largest f32 below 0 and 50.0 are off.
    #[test]
    fn positions_floor_and_the_stamp_edges() {
        let mut cube = vec![0u8; CUBE_LEN];
        let mut b = Binner::new(&mut cube).unwrap();
        let inside = [
            (0.0f32, 0.0f32, 0, 0),
            (-0.0, 0.0, 0, 0),
            (1.0f32.next_down(), 50.0f32.next_down(), 0, 49),
            (50.0f32.next_down(), 0.5, 49, 0),
            (1.0, 2.0, 1, 2),
            (25.0f32.next_down(), 25.0, 24, 25),
            (37.25, 12.75, 37, 12),
        ];
        let mut want = vec![0u8; CUBE_LEN];
        for &(x, y, i, j) in &inside {
            assert_eq!(b.push(x, y, 1000.0), Ok(Outcome::Binned), "({x}, {y})");
            want[at(4, j, i)] += 1;
        }
        let off = [
            (-f32::from_bits(1), 3.0),
            (3.0, -f32::from_bits(1)),
            (-0.5, 3.0),
            (50.0, 3.0),
            (3.0, 50.0),
            (50.5, 50.5),
            (-1e30, 3.0),
            (3.0, f32::MAX),
            (1e9, 1e9),
        ];
        for &(x, y) in &off {
            assert_eq!(
                b.push(x, y, 1000.0),
                Ok(Outcome::OutsideStamp),
                "({x}, {y})"
            );
        }
        // Outside the bands wins over outside the stamp (the host selects energies first).
        assert_eq!(b.push(-3.0, 3.0, 100.0), Ok(Outcome::OutsideBands));
        assert_eq!(b.cube(), &want[..]);
        let s = b.stats();
        assert_eq!(
            (s.binned, s.outside_stamp, s.outside_bands),
            (inside.len() as u32, off.len() as u32, 1)
        );
    }

    /// A pixel stops at the type's maximum, every further event counted as saturated; the
    /// cube then carries the SATURATED flag (as `infer` derives it) and so does the binner.
    #[test]
    fn saturation_at_255_and_65535() {
        fn fill<N: Count>(extra: u32) -> (Vec<N>, Stats, Flags) {
            let mut cube = vec![N::default(); CUBE_LEN];
            let max: u32 = N::MAX.into();
            let mut b = Binner::new(&mut cube).unwrap();
            for k in 0..max + extra {
                let got = b.push(7.5, 9.5, 2500.0).unwrap(); // band 6: [2, 3) keV
                let want = if k < max {
                    Outcome::Binned
                } else {
                    Outcome::Saturated
                };
                assert_eq!(got, want, "{} event {k}", N::NAME);
            }
            b.push(8.5, 9.5, 2500.0).unwrap();
            let (s, f) = (b.stats(), b.flags());
            (cube, s, f)
        }
        let (cube, s, f) = fill::<u8>(45);
        assert_eq!(u32::from(cube[at(6, 9, 7)]), 255);
        assert_eq!(cube[at(6, 9, 8)], 1);
        assert_eq!((s.binned, s.saturated), (256, 45));
        assert_eq!(f, Flags::SATURATED);
        assert_eq!(crate::model::cube_flags(&cube, u8::MAX), Flags::SATURATED);
        let (cube, s, f) = fill::<u16>(3);
        assert_eq!(cube[at(6, 9, 7)], 65535);
        assert_eq!((s.binned, s.saturated), (65536, 3));
        assert_eq!(f, Flags::SATURATED);
        assert_eq!(crate::model::cube_flags(&cube, u16::MAX), Flags::SATURATED);
        // Exactly at the maximum without a lost event: the binner loses nothing, the cube is
        // still flagged (it cannot tell).
        let (cube, s, f) = fill::<u8>(0);
        assert_eq!((s.saturated, f), (0, Flags::NONE));
        assert!(crate::model::cube_flags(&cube, u8::MAX).contains(Flags::SATURATED));
    }

    /// NaN and infinities are typed errors naming the field, counted as invalid, and leave
    /// the cube unchanged; so is a cube of the wrong length, and so are bad edges.
    #[test]
    fn non_finite_events_are_errors_not_panics() {
        let mut cube = vec![0u8; CUBE_LEN];
        let mut b = Binner::new(&mut cube).unwrap();
        b.push(1.5, 1.5, 500.0).unwrap();
        let before: Vec<u8> = b.cube().to_vec();
        let bad = [
            (f32::NAN, 1.0, 500.0, EventField::X),
            (1.0, f32::NAN, 500.0, EventField::Y),
            (1.0, 1.0, f32::NAN, EventField::Energy),
            (f32::INFINITY, 1.0, 500.0, EventField::X),
            (1.0, f32::NEG_INFINITY, 500.0, EventField::Y),
            (1.0, 1.0, f32::INFINITY, EventField::Energy),
            (f32::NAN, f32::NAN, f32::NAN, EventField::X),
            (-f32::NAN, 1.0, 500.0, EventField::X),
        ];
        for &(x, y, pi, field) in &bad {
            assert_eq!(
                b.push(x, y, pi),
                Err(Error::BadEvent { field }),
                "({x}, {y}, {pi})"
            );
        }
        assert_eq!(b.cube(), &before[..]);
        let s = b.stats();
        assert_eq!((s.binned, s.invalid), (1, bad.len() as u32));
        assert_eq!(s.total(), 1 + bad.len() as u64);
        let mut short = vec![0u16; CUBE_LEN - 1];
        assert_eq!(
            Binner::new(&mut short).map(|_| ()),
            Err(Error::BadLength {
                expected: CUBE_LEN,
                got: CUBE_LEN - 1
            })
        );
        for e in [
            [1.0, f32::NAN, 3.0],
            [1.0, 3.0, 2.0],
            [f32::NEG_INFINITY, 0.0, 1.0],
        ] {
            assert_eq!(BandEdges::new(e), Err(Error::BadBandEdges), "{e:?}");
        }
        assert_eq!(BandEdges::<1>::new([1.0]), Err(Error::BadBandEdges));
    }

    /// Other bands and shapes: 2 bands of 3 x 4 pixels, the cube `[band][y][x]`; new and
    /// clear zero it.
    #[test]
    fn custom_edges_and_shape() {
        let mut cube = [9u16; 2 * 3 * 4];
        let edges = BandEdges::new([500.0, 2000.0, 7000.0]).unwrap();
        let mut b = Binner::<u16, 3, 3, 4>::with_edges(&mut cube, edges).unwrap();
        assert!(b.cube().iter().all(|&c| c == 0));
        assert_eq!(b.push(3.5, 2.5, 2000.0), Ok(Outcome::Binned));
        assert_eq!(b.push(3.5, 2.5, 1999.0), Ok(Outcome::Binned));
        assert_eq!(b.push(4.0, 2.5, 1999.0), Ok(Outcome::OutsideStamp));
        assert_eq!(b.push(3.5, 3.0, 1999.0), Ok(Outcome::OutsideStamp));
        assert_eq!(b.push(0.0, 0.0, 7000.0), Ok(Outcome::OutsideBands));
        assert_eq!(b.cube()[(3 * 4) + 2 * 4 + 3], 1);
        assert_eq!(b.cube()[2 * 4 + 3], 1);
        assert_eq!(b.flags(), Flags::NONE);
        b.clear();
        assert_eq!(
            (b.stats(), b.flags()),
            (Stats::default(), Flags::EMPTY_CUBE)
        );
        let (c, _) = b.finish();
        assert!(c.iter().all(|&c| c == 0));
        let mut wrong = [0u16; 25];
        assert!(Binner::<u16, 3, 3, 4>::with_edges(&mut wrong, edges).is_err());
    }

    /// `pixel` is `floor` restricted to the stamp, over every 101st f32 in [-52, 52] (both
    /// signs of each bit pattern: subnormals, zero, the edges at 0 and 50) and extremes.
    #[test]
    fn pixel_is_floor_on_the_stamp() {
        let floor = |v: f32| {
            let f = f64::from(v).floor();
            (0.0..50.0).contains(&f).then_some(f as usize)
        };
        for bits in (0..=52.0f32.to_bits()).step_by(101) {
            for v in [f32::from_bits(bits), -f32::from_bits(bits)] {
                assert_eq!(pixel(v, 50), floor(v), "{v}");
            }
        }
        for v in [
            -0.0,
            0.0,
            -f32::from_bits(1),
            f32::from_bits(1),
            1.0f32.next_down(),
            50.0f32.next_down(),
            50.0,
            1e30,
            -1e30,
            f32::MAX,
            f32::MIN,
        ] {
            assert_eq!(pixel(v, 50), floor(v), "{v}");
        }
    }

    /// `narrow` keeps the f64 floor, where `as f32` does not.
    #[test]
    fn narrowing_keeps_the_pixel() {
        let mut moved = 0;
        for k in 0..100_000u32 {
            let x = f64::from(k) * 5.0e-4 - 0.5 + f64::from(k % 7) * 1e-12;
            for v in [x, (x.round() - 1e-10), x.round() + 1e-10] {
                assert_eq!(f64::from(narrow(v)).floor(), v.floor(), "{v}");
                assert!(f64::from(narrow(v)) <= v);
                moved += usize::from(f64::from(v as f32).floor() != v.floor());
            }
        }
        assert!(moved > 0, "rounding to nearest does move some");
        assert!(narrow(f64::NAN).is_nan());
        assert_eq!(narrow(f64::INFINITY), f32::INFINITY);
        assert_eq!(narrow(1e300), f32::MAX);
    }
}
