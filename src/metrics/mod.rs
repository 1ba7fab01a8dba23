//! TEMPORARY stub in main until the metrics branch lands.
/// Stats client.
pub fn stats_command(_data_dir: &std::path::Path, _json: bool, _reset: bool) -> i32 {
    1
}
