fn main() {
    println!("switchyard");
}
