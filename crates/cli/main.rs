//! The `evaltap` binary: parse arguments, hand off to the library.

fn main() -> std::process::ExitCode {
    evaltap::main()
}
