//! Every adapter exports the same aliases, each the core type on this adapter's timer.

tollgate::__assert_adapter_aliases! {
    adapter: tollgate_embassy,
    timer: EmbassyTimer,
    flavor: async,
    alloc: [#[cfg(feature = "alloc")]],
}
