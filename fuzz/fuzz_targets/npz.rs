//! Fuzz target `npz`: arbitrary bytes → `.npz` (zip of `.npy`) and `.npy` readers, with a 64 MiB
//! memory budget. Reading must return a data set or an error, never panic, hang or allocate past
//! the budget (a decompression bomb or a header claiming a huge shape is refused unread).

#![no_main]

use libfuzzer_sys::fuzz_target;
use whittle_runner::data::InputSet;

const BUDGET: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = InputSet::from_npz_reader(std::io::Cursor::new(data), "fuzz.npz", BUDGET) {
        for i in 0..set.len().min(4) {
            let _ = set.sample(i);
        }
        let _ = set.take(2);
    }
    if let Ok(set) = InputSet::from_npy_reader(data, "fuzz.npy", "x", BUDGET) {
        let _ = set.sample(0);
    }
});
