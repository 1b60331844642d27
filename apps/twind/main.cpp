// twind: one node of the twin runtime, with the twin types of its model files (`--models`).
// `twind --help` lists every option.

#include "twin/node/node.hpp"

int main(int argc, char** argv) {
  return twin::node::run(argc, argv);
}
