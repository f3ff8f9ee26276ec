fn main() {
    eprintln!("corral: under construction");
    std::process::exit(2);
}
