//! Any bytes as an NPY stream through the header guard (`codegen::npy::open`), then
//! every value read as the declared dtype: an error or the data, never a hang, an
//! allocation beyond the input's size, or a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(npy) = codegen::npy::open(data, data.len() as u64) else {
        return;
    };
    let descr = npy.dtype().descr();
    let code = descr.trim_start_matches(['<', '>', '|', '=']).to_string();
    match code.as_str() {
        "u1" => drop(npy.into_vec::<u8>()),
        "u2" => drop(npy.into_vec::<u16>()),
        "i4" => drop(npy.into_vec::<i32>()),
        "i8" => drop(npy.into_vec::<i64>()),
        "f4" => drop(npy.into_vec::<f32>()),
        "f8" => drop(npy.into_vec::<f64>()),
        _ => {}
    }
});
