/* Runs one signature of a SavedModel through TensorFlow's C API: no Python anywhere.
 *
 * usage: run_saved_model EXPORT_DIR INPUT_OP OUTPUT_OP OUTPUT_INDEX ROWS COLS IN.f32 OUT.f32
 *
 * Loads EXPORT_DIR with the "serve" tag (TF_LoadSessionFromSavedModel, what a C++ server
 * does), feeds a float32 [ROWS, COLS] tensor read from IN.f32 to INPUT_OP:0, writes the
 * float32 output OUTPUT_OP:OUTPUT_INDEX to OUT.f32 and prints its shape. On a TF error it
 * prints "TF_ERROR: <message>" to stderr and exits 2.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/c/c_api.h"

static void free_buffer(void *data, size_t len, void *arg) { (void)len; (void)arg; free(data); }

static int check(TF_Status *status, const char *what) {
  if (TF_GetCode(status) != TF_OK) {
    fprintf(stderr, "TF_ERROR: %s: %s\n", what, TF_Message(status));
    return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: %s DIR INPUT_OP OUTPUT_OP OUTPUT_INDEX ROWS COLS IN OUT\n", argv[0]);
    return 1;
  }
  const char *dir = argv[1];
  int64_t dims[2] = {atoll(argv[5]), atoll(argv[6])};
  size_t count = (size_t)(dims[0] * dims[1]);
  float *values = malloc(count * sizeof(float));
  FILE *in = fopen(argv[7], "rb");
  if (!in || fread(values, sizeof(float), count, in) != count) {
    fprintf(stderr, "cannot read %zu floats from %s\n", count, argv[7]);
    return 1;
  }
  fclose(in);

  TF_Status *status = TF_NewStatus();
  TF_Graph *graph = TF_NewGraph();
  TF_SessionOptions *options = TF_NewSessionOptions();
  const char *tags[] = {"serve"};
  TF_Session *session =
      TF_LoadSessionFromSavedModel(options, NULL, dir, tags, 1, graph, NULL, status);
  if (!check(status, "load")) return 2;

  TF_Operation *input_op = TF_GraphOperationByName(graph, argv[2]);
  TF_Operation *output_op = TF_GraphOperationByName(graph, argv[3]);
  if (!input_op || !output_op) {
    fprintf(stderr, "operation %s or %s not found\n", argv[2], argv[3]);
    return 1;
  }
  TF_Output input = {input_op, 0};
  TF_Output output = {output_op, atoi(argv[4])};
  TF_Tensor *x = TF_NewTensor(TF_FLOAT, dims, 2, values, count * sizeof(float), free_buffer, NULL);
  TF_Tensor *result = NULL;
  TF_SessionRun(session, NULL, &input, &x, 1, &output, &result, 1, NULL, 0, NULL, status);
  if (!check(status, "run")) return 2;

  int rank = TF_NumDims(result);
  size_t n = TF_TensorByteSize(result) / sizeof(float);
  printf("shape:");
  for (int i = 0; i < rank; ++i) printf(" %lld", (long long)TF_Dim(result, i));
  printf("\n");
  FILE *out = fopen(argv[8], "wb");
  if (!out || fwrite(TF_TensorData(result), sizeof(float), n, out) != n) {
    fprintf(stderr, "cannot write %s\n", argv[8]);
    return 1;
  }
  fclose(out);

  TF_DeleteTensor(x);
  TF_DeleteTensor(result);
  TF_CloseSession(session, status);
  TF_DeleteSession(session, status);
  TF_DeleteSessionOptions(options);
  TF_DeleteGraph(graph);
  TF_DeleteStatus(status);
  return 0;
}
