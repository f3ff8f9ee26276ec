fn main() {
    eprintln!("corral-master: not built yet");
    std::process::exit(2);
}
