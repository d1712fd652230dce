//! Peak stack by stack painting: before an inference, fill the free stack below the current
//! stack pointer with [`PATTERN`]; afterwards the lowest word that no longer holds it is the
//! deepest the stack went.
//!
//! Exact to the word for everything the code writes; a frame's lowest bytes that are
//! reserved but never written (padding) are not seen, so the figure can be a few bytes low.
//! Interrupt handlers that run meanwhile (the SysTick wrap counter) are included, as they
//! would be on a real board.

use core::ptr;

/// The paint. Any word the program writes with exactly this value would be missed, which
/// for a 32-bit pattern at the bottom of the stack is unlikely.
pub const PATTERN: u32 = 0x5EED_C0DE;

/// How far below the current stack pointer to paint: enough for the f32 arena (65,000 B)
/// plus frames. A measurement that reaches the bottom of the painted range is refused.
pub const PAINT_DEPTH: usize = 192 * 1024;

/// Room left unpainted just below the painting function's own locals.
const MARGIN: usize = 256;

/// A painted range `[bottom, top)`.
#[derive(Debug, Clone, Copy)]
pub struct Painted {
    bottom: usize,
    top: usize,
}

impl Painted {
    /// Bytes painted.
    pub fn len(&self) -> usize {
        self.top - self.bottom
    }

    /// Whether nothing was painted.
    pub fn is_empty(&self) -> bool {
        self.top == self.bottom
    }

    /// The top of the painted range, a little below the caller's stack pointer.
    pub fn above(&self) -> usize {
        self.top
    }
}

/// Paint at most `depth` bytes of stack below the current stack pointer, never below
/// `bottom` (the end of the stack region). Call it right before the function to measure.
#[inline(never)]
pub fn paint(bottom: usize, depth: usize) -> Painted {
    let here = 0u32;
    let sp = core::hint::black_box(&raw const here) as usize;
    let top = (sp - MARGIN) & !3;
    let bottom = (top.saturating_sub(depth).max(bottom) + 3) & !3;
    let mut a = bottom;
    while a < top {
        // SAFETY: `[bottom, top)` lies in the stack region (above `bottom`, the end of the
        // stack, and below this function's frame), which nothing uses at this point: it is
        // the free part of the stack. Aligned word writes.
        unsafe { ptr::write_volatile(a as *mut u32, PATTERN) };
        a += 4;
    }
    Painted { bottom, top }
}

/// The lowest address written since [`paint`], or `None` if even the bottom word of the
/// painted range was overwritten (the stack may have gone deeper than was painted).
/// If nothing was written, the top of the range.
pub fn lowest_used(p: &Painted) -> Option<usize> {
    let mut a = p.bottom;
    while a < p.top {
        // SAFETY: the range was painted by `paint` (aligned words of the stack region) and is
        // below the current stack pointer's frame or used stack memory; reading it is sound.
        let v = unsafe { ptr::read_volatile(a as *const u32) };
        if v != PATTERN {
            return if a == p.bottom { None } else { Some(a) };
        }
        a += 4;
    }
    Some(p.top)
}
