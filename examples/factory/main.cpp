// twind-factory: twind with the factory's twin types, one of them in C++ (factory.cpp), and
// `--demo`, which builds the plant and simulates its motors. A program that ships its own
// C++ types looks the same, without the demo.

#include "demo.hpp"
#include "factory.hpp"

int main(int argc, char** argv) {
  twin::factory::demo demo;
  twin::node::extensions ext;
  ext.name = "twind-factory";
  ext.types = [](twin::runtime::type_registry& types) {
    return twin::factory::register_types(types);
  };
  demo.extend(ext);
  return twin::node::run(argc, argv, ext);
}
