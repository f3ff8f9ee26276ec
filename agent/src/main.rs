fn main() {
    eprintln!("corral-agent: not built yet");
    std::process::exit(2);
}
