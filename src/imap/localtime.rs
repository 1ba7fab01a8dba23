//! The server's local time zone, as Dovecot uses it for internal dates: the store keeps an
//! INTERNALDATE as Unix seconds without the zone it was given in, so FETCH INTERNALDATE shows
//! it in the local zone and SEARCH BEFORE / ON / SINCE compare local calendar dates.

/// Seconds east of UTC of the local time zone at Unix time `secs` (DST included); 0 if the C
/// library cannot say.
pub fn utc_offset(secs: i64) -> i32 {
    // time_t is 64-bit on the platforms we build for; the check is for any other.
    let Some(t) = libc::time_t::try_from(secs).ok() else {
        return 0;
    };
    // SAFETY: `tm` is plain old data that localtime_r fills in; both pointers are valid for the
    // call and localtime_r (unlike localtime) keeps no pointer to them.
    let offset = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    };
    // Real zones are within ±26 h; anything else is garbage from the C library.
    i32::try_from(offset)
        .ok()
        .filter(|o| o.abs() <= 26 * 3600)
        .unwrap_or(0)
}

/// The local calendar day (days since 1970-01-01) of Unix time `secs`.
pub fn local_day(secs: i64) -> i64 {
    (secs + i64::from(utc_offset(secs))).div_euclid(86400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_a_plausible_zone_and_days_follow_it() {
        for secs in [0, 1_174_777_200, 1_193_522_400, 4_000_000_000] {
            let o = utc_offset(secs);
            assert!(o.abs() <= 26 * 3600 && o % 60 == 0, "offset {o} at {secs}");
            assert_eq!(local_day(secs), (secs + i64::from(o)).div_euclid(86400));
        }
        // Out of range for time_t on no platform we run on, but never a panic.
        let _ = utc_offset(i64::MAX);
    }
}
