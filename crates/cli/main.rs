//! The `evaltap` binary: parse arguments, hand off to the library.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    evaltap::main()
}
