//! Celestial projections through CDS's `wcs` crate (FITS WCS, Calabretta & Greisen
//! 2002): the cutout grid of every cluster, the tangent plane of a sky tile, and the
//! WCS of an exposure map read from its header.
//!
//! Pixel coordinates here are **continuous and 0-based**: pixel `(i, j)` of an image
//! covers `[i, i + 1) x [j, j + 1)`, so its centre is `(i + 0.5, j + 0.5)`, which is
//! FITS pixel `(i + 1, j + 1)`. This is the simulator's own convention (it paints a
//! photon at `(x, y)` into pixel `(floor x, floor y)`), so a position converts to a
//! pixel index by `floor` alone.
//!
//! The cutout grid ([`Projection::cutout`]) is a gnomonic (`TAN`) projection centred
//! on the cluster, the centre at the corner between pixels 24 and 25 (continuous
//! `(25, 25)`, the simulator's `centre`), `x` growing towards the **west** (decreasing
//! RA, `CDELT1 < 0`) and `y` towards the **north** (`CDELT2 > 0`): the image as an
//! astronomer displays it, north up and east left, when row 0 is drawn at the bottom.

use anyhow::{Context, Result, anyhow, bail};
use wcs::{ImgXY, LonLat, WCS, WCSParams};

/// A celestial projection between (RA, Dec) in degrees (ICRS/J2000) and continuous
/// 0-based pixel coordinates.
pub struct Projection {
    wcs: WCS,
    /// `(NAXIS1, NAXIS2)`.
    pub size: (usize, usize),
    /// Pixel size along each axis in arcsec (|CDELT| or the CD matrix's).
    pub pixel_arcsec: (f64, f64),
}

impl std::fmt::Debug for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projection")
            .field("size", &self.size)
            .field("pixel_arcsec", &self.pixel_arcsec)
            .finish_non_exhaustive()
    }
}

/// FITS WCS keywords of a two-axis celestial image (the names as in a FITS header).
pub type Keywords = serde_json::Map<String, serde_json::Value>;

impl Projection {
    /// Build from FITS header keywords (`CTYPE1/2`, `CRPIX1/2`, `CRVAL1/2` and `CDELT1/2`
    /// with optional `PCi_j` or `CROTA2`, or a `CDi_j` matrix; `NAXIS1/2`).
    pub fn from_keywords(k: &Keywords) -> Result<Self> {
        let get = |name: &str| k.get(name).and_then(serde_json::Value::as_f64);
        let ctype1 = k.get("CTYPE1").and_then(|v| v.as_str()).unwrap_or("");
        let ctype2 = k.get("CTYPE2").and_then(|v| v.as_str()).unwrap_or("");
        if !(ctype1.starts_with("RA--") && ctype2.starts_with("DEC-")) || ctype1.len() < 8 {
            bail!(
                "CTYPE1/CTYPE2 = {ctype1:?}/{ctype2:?}: expected equatorial axes such as 'RA---TAN'/'DEC--TAN'"
            );
        }
        let n1 = get("NAXIS1").context("keyword NAXIS1 missing")?;
        let n2 = get("NAXIS2").context("keyword NAXIS2 missing")?;
        if !(n1 >= 1.0 && n2 >= 1.0) {
            bail!("NAXIS1 x NAXIS2 = {n1} x {n2}: not an image");
        }
        for key in ["CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2"] {
            match get(key) {
                Some(v) if v.is_finite() => {}
                Some(v) => bail!("keyword {key} = {v} is not finite"),
                None => bail!("keyword {key} missing"),
            }
        }
        let scale = match (get("CD1_1"), get("CD2_2")) {
            (Some(a), Some(d)) => {
                let (b, c) = (get("CD1_2").unwrap_or(0.0), get("CD2_1").unwrap_or(0.0));
                ((a * a + c * c).sqrt(), (b * b + d * d).sqrt())
            }
            _ => {
                let d1 = get("CDELT1").context("neither CDi_j nor CDELT1 given")?;
                let d2 = get("CDELT2").context("neither CDi_j nor CDELT2 given")?;
                (d1.abs(), d2.abs())
            }
        };
        if !(scale.0 > 0.0 && scale.1 > 0.0 && scale.0.is_finite() && scale.1.is_finite()) {
            bail!("pixel scale {} x {} deg is not positive", scale.0, scale.1);
        }
        let mut params = k.clone();
        params.insert("NAXIS".into(), 2.into());
        params.insert("CTYPE1".into(), ctype1.into());
        params.insert("CTYPE2".into(), ctype2.into());
        for key in ["NAXIS1", "NAXIS2"] {
            let v = get(key).expect("checked above").round() as i64;
            params.insert(key.into(), v.into());
        }
        // WCSParams has a field per keyword it knows; anything else is ignored.
        let params: WCSParams = serde_json::from_value(serde_json::Value::Object(params))
            .map_err(|e| anyhow!("WCS keywords: {e}"))?;
        let wcs = WCS::new(&params).map_err(|e| anyhow!("WCS: {e}"))?;
        Ok(Self {
            wcs,
            size: (n1 as usize, n2 as usize),
            pixel_arcsec: (scale.0 * 3600.0, scale.1 * 3600.0),
        })
    }

    /// Keywords of a gnomonic projection centred on (`ra`, `dec`) with square pixels of
    /// `pixel_arcsec`, `npix` x `npix`, the centre at continuous `(npix / 2, npix / 2)`,
    /// west along +x and north along +y.
    pub fn tan_keywords(ra: f64, dec: f64, pixel_arcsec: f64, npix: usize) -> Keywords {
        let mut k = Keywords::new();
        let c = npix as f64 / 2.0 + 0.5; // continuous npix/2 = FITS npix/2 + 0.5
        for (key, v) in [
            ("CTYPE1", serde_json::Value::from("RA---TAN")),
            ("CTYPE2", "DEC--TAN".into()),
            ("NAXIS1", npix.into()),
            ("NAXIS2", npix.into()),
            ("CRPIX1", c.into()),
            ("CRPIX2", c.into()),
            ("CRVAL1", ra.into()),
            ("CRVAL2", dec.into()),
            ("CDELT1", (-pixel_arcsec / 3600.0).into()),
            ("CDELT2", (pixel_arcsec / 3600.0).into()),
            ("RADESYS", "ICRS".into()),
            ("EQUINOX", 2000.0.into()),
        ] {
            k.insert(key.into(), v);
        }
        k
    }

    /// The cutout grid of a cluster at (`ra`, `dec`): see the module docs.
    pub fn cutout(ra: f64, dec: f64, pixel_arcsec: f64, npix: usize) -> Result<Self> {
        check_sky(ra, dec)?;
        Self::from_keywords(&Self::tan_keywords(ra, dec, pixel_arcsec, npix))
    }

    /// Continuous 0-based pixel position of (`ra`, `dec`) in degrees; `None` where the
    /// projection is undefined (the far hemisphere of a zenithal projection).
    pub fn to_pixel(&self, ra: f64, dec: f64) -> Option<(f64, f64)> {
        let p = self
            .wcs
            .proj(&LonLat::new(ra.to_radians(), dec.to_radians()))?;
        Some((p.x() - 0.5, p.y() - 0.5))
    }

    /// (RA, Dec) in degrees of continuous 0-based pixel position (`x`, `y`); RA in `[0, 360)`.
    pub fn to_sky(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let s = self.wcs.unproj(&ImgXY::new(x + 0.5, y + 0.5))?;
        let ra = s.lon().to_degrees().rem_euclid(360.0);
        // rem_euclid can round up to exactly 360 for tiny negative inputs.
        let ra = if ra >= 360.0 { 0.0 } else { ra };
        Some((ra, s.lat().to_degrees()))
    }

    /// Pixel index `(i, j)` holding (`ra`, `dec`), if it lies on the image.
    pub fn pixel_index(&self, ra: f64, dec: f64) -> Option<(usize, usize)> {
        let (x, y) = self.to_pixel(ra, dec)?;
        let (i, j) = (x.floor(), y.floor());
        (i >= 0.0 && j >= 0.0 && i < self.size.0 as f64 && j < self.size.1 as f64)
            .then_some((i as usize, j as usize))
    }
}

/// RA in `[0, 360)` and Dec in `[-90, 90]` degrees, both finite.
pub fn check_sky(ra: f64, dec: f64) -> Result<()> {
    if !(ra.is_finite() && (0.0..360.0).contains(&ra)) {
        bail!("RA {ra} deg is outside [0, 360)");
    }
    if !(dec.is_finite() && (-90.0..=90.0).contains(&dec)) {
        bail!("Dec {dec} deg is outside [-90, 90]");
    }
    Ok(())
}

/// Great-circle distance between two positions, degrees (haversine, exact at small angles).
pub fn separation_deg(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (p1, p2) = (dec1.to_radians(), dec2.to_radians());
    let dp = p2 - p1;
    let dl = (ra2 - ra1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * a.sqrt().min(1.0).asin().to_degrees()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gnomonic projection written out from its definition (Calabretta & Greisen
    /// 2002, eqs. 5, 54 and the TAN case of 12-13), independent of the `wcs` crate:
    /// standard coordinates (xi, eta) in degrees, then x = crpix - xi / pix.
    fn gnomonic_by_hand(ra0: f64, dec0: f64, ra: f64, dec: f64, pix: f64) -> (f64, f64) {
        let (a0, d0, a, d) = (
            ra0.to_radians(),
            dec0.to_radians(),
            ra.to_radians(),
            dec.to_radians(),
        );
        let cos_c = d0.sin() * d.sin() + d0.cos() * d.cos() * (a - a0).cos();
        let xi = d.cos() * (a - a0).sin() / cos_c;
        let eta = (d0.cos() * d.sin() - d0.sin() * d.cos() * (a - a0).cos()) / cos_c;
        let (xi, eta) = (xi.to_degrees() * 3600.0, eta.to_degrees() * 3600.0);
        (25.0 - xi / pix, 25.0 + eta / pix)
    }

    fn check(ra0: f64, dec0: f64, ra: f64, dec: f64) {
        let p = Projection::cutout(ra0, dec0, 10.0, 50).unwrap();
        let (x, y) = p.to_pixel(ra, dec).unwrap();
        let (hx, hy) = gnomonic_by_hand(ra0, dec0, ra, dec, 10.0);
        assert!(
            (x - hx).abs() < 1e-7 && (y - hy).abs() < 1e-7,
            "({ra0}, {dec0}) -> ({ra}, {dec}): wcs ({x}, {y}), by hand ({hx}, {hy})"
        );
        let (ra2, dec2) = p.to_sky(x, y).unwrap();
        assert!(
            separation_deg(ra, dec, ra2, dec2) * 3600.0 < 1e-6,
            "round trip ({ra}, {dec}) -> ({ra2}, {dec2})"
        );
    }

    #[test]
    fn centre_and_orientation() {
        let p = Projection::cutout(150.0, 2.0, 10.0, 50).unwrap();
        let (x, y) = p.to_pixel(150.0, 2.0).unwrap();
        assert!((x - 25.0).abs() < 1e-12 && (y - 25.0).abs() < 1e-12);
        // North is +y, east (larger RA) is -x.
        let (_, yn) = p.to_pixel(150.0, 2.0 + 100.0 / 3600.0).unwrap();
        assert!((yn - 35.0).abs() < 1e-6, "{yn}");
        let (xe, _) = p
            .to_pixel(150.0 + 100.0 / 3600.0 / 2f64.to_radians().cos(), 2.0)
            .unwrap();
        assert!(xe < 15.01 && xe > 14.99, "{xe}");
    }

    #[test]
    fn gnomonic_against_hand_formulas() {
        // Near the pole, across RA = 0 (both ways) and at a tile corner (3.6 deg tile:
        // the corner lies 1.8 deg off in both axes).
        check(45.0, 89.9, 225.0, 89.95);
        check(10.0, 89.5, 100.0, 89.45);
        check(359.99, -30.0, 0.01, -30.001);
        check(0.005, 12.0, 359.995, 12.002);
        check(150.0, 2.0, 151.8, 3.8);
        check(150.0, -60.0, 148.0, -61.8);
    }

    #[test]
    fn refuses_bad_positions_and_keywords() {
        assert!(Projection::cutout(360.0, 0.0, 10.0, 50).is_err());
        assert!(Projection::cutout(10.0, 91.0, 10.0, 50).is_err());
        assert!(Projection::cutout(f64::NAN, 0.0, 10.0, 50).is_err());
        let mut k = Projection::tan_keywords(10.0, 0.0, 10.0, 50);
        k.insert("CTYPE1".into(), "GLON-TAN".into());
        assert!(Projection::from_keywords(&k).is_err());
        let mut k = Projection::tan_keywords(10.0, 0.0, 10.0, 50);
        k.remove("CRVAL2");
        let e = Projection::from_keywords(&k).unwrap_err().to_string();
        assert!(e.contains("CRVAL2"), "{e}");
    }
}
