fn main() {
    eprintln!("corral-shim: under construction");
    std::process::exit(2);
}
