fn main() {
    std::process::exit(ringpost::cli::main());
}
