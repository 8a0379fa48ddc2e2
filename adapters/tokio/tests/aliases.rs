//! Every adapter exports the same aliases, each the core type on this adapter's timer.

tollgate::__assert_adapter_aliases! {
    adapter: tollgate_tokio,
    timer: TokioTimer,
    flavor: async,
    alloc: [],
}
